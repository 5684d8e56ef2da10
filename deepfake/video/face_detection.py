"""Finding faces with MTCNN (facenet-pytorch), cutting margin crops and linking faces into tracks.

Detection runs on a downscaled copy of each frame (MTCNN's cost grows with pixels, its recall on faces
larger than ~40 px hardly changes); boxes and landmarks are mapped back and crops are cut from the
full-resolution frame, so crop quality does not pay for detection speed.

`faces_in_frames` is the one frames-to-crops loop: the faces stage feeds it stored frames and writes the
crops, `VideoDetector` feeds it decoded frames (after the same storage round trip) and scores the crops.
With `faces.detect_every` > 1 it searches whole frames only every n-th frame and in between looks for each
face again in a small square around where it was: most of MTCNN's work is the whole-frame image pyramid.
In a video a face is kept at `faces.min_prob`, and down to `faces.keep_prob` while it continues a face kept
in the previous sampled frame: a swap that makes a face look odd to MTCNN lowers its probability, and a
detector that dropped those faces would be blind to the very videos it is asked about.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from deepfake.config import FaceParams
from deepfake.images import StoredFrame


@dataclass(frozen=True)
class Face:
    """One detected face in full-resolution frame coordinates. Landmarks: eyes, nose, mouth corners."""

    box: tuple[float, float, float, float]
    prob: float
    landmarks: np.ndarray  # (5, 2)

    @property
    def size(self) -> float:
        return min(self.box[2] - self.box[0], self.box[3] - self.box[1])


def load_face_detector(runtime: str = "onnx", device: str = "cpu"):
    """MTCNN with the weights that ship inside facenet-pytorch (no download): on ONNX Runtime (`onnx`, CPU),
    or facenet-pytorch's own (`torch`, and on any other device)."""
    if runtime == "onnx" and device == "cpu":
        from deepfake.video.mtcnn_onnx import OnnxMTCNN

        return OnnxMTCNN()
    from facenet_pytorch import MTCNN
    from facenet_pytorch.models.utils import detect_face

    # facenet-pytorch resizes (the image pyramid, every candidate box) with torch's "area" interpolation,
    # adaptive average pooling, which took a third of MTCNN's CPU time here. OpenCV's INTER_AREA computes
    # the same average several times faster; detections agree (same faces, box IoU ~0.96).
    detect_face.imresample = _area_resample
    return MTCNN(keep_all=True, device=device)


def _area_resample(images, size: tuple[int, int]):
    import torch

    if images.device.type != "cpu":
        return torch.nn.functional.interpolate(images, size=size, mode="area")
    height, width = size
    arrays = images.permute(0, 2, 3, 1).numpy()
    resized = np.stack(
        [cv2.resize(np.ascontiguousarray(a), (width, height), interpolation=cv2.INTER_AREA) for a in arrays]
    )
    if resized.ndim == 3:  # OpenCV drops a single channel axis
        resized = resized[..., None]
    return torch.from_numpy(resized).permute(0, 3, 1, 2)


def detect_faces(detector, frame_rgb: np.ndarray, params: FaceParams) -> list[Face]:
    """Faces in one RGB frame that pass the probability and size thresholds, at most `max_faces`."""
    return detect_faces_batch(detector, [frame_rgb], params)[0]


DETECTION_BATCH = 16  # frames per MTCNN call: faster than one at a time...
# ...but MTCNN's first network makes 10-channel float maps of every pyramid level of every frame in the
# batch (~350 MB for 16 frames at 960x540): batches are capped at this many detection pixels.
DETECTION_PIXELS = 2_000_000
# Decoded frames held at once: up to DETECTION_BATCH, and no more than 8 full-HD frames' worth (50 MB),
# which keeps a 1080p video's peak memory ~160 MB lower than 16 frames at no cost in speed.
CHUNK_BYTES = 8 * 1920 * 1080 * 3


@dataclass(eq=False)
class FrameFaces:
    """One sampled frame's faces, each with its crop (BGR, crop_size square) and landmarks in crop pixels."""

    index: int
    time_s: float
    faces: list[Face]
    crops: list[np.ndarray]
    landmarks: list[np.ndarray]


def faces_in_frames(
    detector,
    frames: Iterable[tuple[int, float, np.ndarray]],
    params: FaceParams,
    *,
    stored_as: int | None = None,
) -> Iterator[FrameFaces]:
    """Faces and margin crops of each (index, time, BGR frame), in order, a detection batch at a time.

    Frames are held a chunk at a time (DETECTION_BATCH frames, at most CHUNK_BYTES), so a long video never
    sits in memory; crops are cut from the full-resolution frame. `stored_as`: the frames are as decoded from a
    video, and are to be seen as the frames stage stores them, JPEG at this quality (`StoredFrame`: made only
    where detection and crops look, so a frame searched only around its faces costs a few small round trips).
    """
    views = ((index, time_s, StoredFrame(frame, stored_as)) for index, time_s, frame in frames)
    if params.detect_every > 1:
        yield from _tracked(detector, views, params)
        return
    chunk: list[tuple[int, float, StoredFrame]] = []
    previous: list[Face] = []
    for item in views:
        chunk.append(item)
        if len(chunk) == DETECTION_BATCH or len(chunk) * item[2].frame.nbytes >= CHUNK_BYTES:
            yield from _detect_chunk(detector, chunk, params, previous)
            chunk = []
    if chunk:
        yield from _detect_chunk(detector, chunk, params, previous)


def _detect_chunk(
    detector, chunk: list[tuple[int, float, StoredFrame]], params: FaceParams, previous: list[Face]
) -> Iterator[FrameFaces]:
    """The chunk's frames in order; `previous` (the faces of the frame before, updated in place) carries
    continuation across chunks."""
    found = _detect_all(detector, [view.whole() for _, _, view in chunk], params, params.lowest_prob, bgr=True)
    for (index, time_s, view), candidates in zip(chunk, found):
        faces = _continuing(candidates, previous, params)
        previous[:] = faces
        yield _frame_faces(index, time_s, view, faces, params)


def _continuing(candidates: list[Face], previous: list[Face], params: FaceParams) -> list[Face]:
    """The largest `max_faces` of the candidates (found at `lowest_prob`) that reach `min_prob`, or that overlap a
    face of the previous sampled frame by `track_iou`."""
    kept = [
        face
        for face in candidates
        if face.prob >= params.min_prob or any(box_iou(face.box, p.box) >= params.track_iou for p in previous)
    ]
    return kept[: params.max_faces]


def _frame_faces(index: int, time_s: float, view: StoredFrame, faces: list[Face], params: FaceParams) -> FrameFaces:
    cropped = []
    for face in faces:
        pixels = _square_pixels(view, *square_around(face.box, 1 + params.margin))
        cropped.append(crop_with_margin(pixels, face, margin=params.margin, size=params.crop_size))
    return FrameFaces(index, time_s, faces, [crop for crop, _ in cropped], [points for _, points in cropped])


def _square_pixels(view: StoredFrame, left: float, top: float, side: float) -> np.ndarray:
    """The frame's pixels, stored as the frames stage stores them wherever a warp of this square reads
    (interpolation reads up to 2 pixels past it)."""
    return view.window(left - 2, top - 2, left + side + 2, top + side + 2)


# Around a known face MTCNN looks in a square REGION_SCALE times the face's longer side, resized to
# REGION_SIZE pixels: the face is then ~96 px, above O-Net's 48 px input, so boxes and landmarks keep their
# precision, at a few percent of a whole frame's pyramid.
REGION_SCALE = 2.0
REGION_SIZE = 192


def _tracked(detector, frames: Iterable[tuple[int, float, StoredFrame]], params: FaceParams) -> Iterator[FrameFaces]:
    """Whole-frame detection every `detect_every`-th frame; in between, each face of the previous frame looked
    for around its last box. A kept face not found again there (moved, turned away, covered) sends the frame back
    to whole-frame detection, so tracking never loses a face that whole-frame detection would have kept.

    Faces found between `keep_prob` and `min_prob` that continue no kept face are followed the same way without
    being kept: such a face is kept from the frame where it reaches `min_prob`, as whole-frame detection would
    keep it. A swapped face that MTCNN doubts in every frame (a DFDC fake's: 0.7-0.9) then costs a region
    search per frame, not a whole-frame one; one that is lost is only dropped, since nothing was kept of it.
    """
    kept: list[Face] = []  # the previous frame's faces
    followed: list[Face] = []  # all its faces at `lowest_prob`: the kept ones and those that may become kept
    since_whole = 0
    for index, time_s, view in frames:
        found = None
        if followed and since_whole < params.detect_every:
            found, lost = _refound(detector, view, followed, params)
            if any(face is old for face in lost for old in kept):
                found = None
        if found is None:
            found = _detect_all(detector, [view.whole()], params, params.lowest_prob, bgr=True)[0]
            since_whole = 0
        since_whole += 1
        kept = _continuing(found, kept, params)
        followed = found
        yield _frame_faces(index, time_s, view, kept, params)


def _refound(detector, view: StoredFrame, previous: list[Face], params: FaceParams) -> tuple[list[Face], list[Face]]:
    """Each previous face looked for near its box, down to `lowest_prob`: (the faces found again, largest first,
    one per face however many regions found it; the previous faces that were not)."""
    height, width = view.shape[:2]
    min_pixels = params.min_size * min(height, width)
    regions, scales, corners = [], [], []
    for face in previous:
        left, top, side = square_around(face.box, REGION_SCALE)
        frame = _square_pixels(view, left, top, side)
        scale = REGION_SIZE / side
        matrix = np.array([[scale, 0, -left * scale], [0, scale, -top * scale]], dtype=np.float32)
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        region = cv2.warpAffine(frame, matrix, (REGION_SIZE, REGION_SIZE), flags=interpolation)
        regions.append(cv2.cvtColor(region, cv2.COLOR_BGR2RGB))
        scales.append(scale)
        corners.append((left, top))
    # The face fills about 1 / REGION_SCALE of the region; half that is the smallest size worth looking for.
    detector.min_face_size = max(12, int(REGION_SIZE / REGION_SCALE / 2))
    boxes, probs, landmarks = detector.detect(np.stack(regions), landmarks=True)
    found: list[Face] = []
    lost: list[Face] = []
    for face, scale, (left, top), region_boxes, region_probs, region_points in zip(
        previous, scales, corners, boxes, probs, landmarks
    ):
        candidates = [
            c
            for c in _faces_in_frame_pixels(
                region_boxes, region_probs, region_points, scale, min_pixels, params.lowest_prob, offset=(left, top)
            )
            if box_iou(c.box, face.box) >= params.track_iou
        ]
        if not candidates:
            lost.append(face)
            continue
        best = max(candidates, key=lambda c: box_iou(c.box, face.box))
        if all(box_iou(best.box, other.box) < 0.5 for other in found):  # two regions that found one face
            found.append(best)
    found.sort(key=lambda f: f.size, reverse=True)
    return found, lost


def detect_faces_batch(
    detector, frames: list[np.ndarray], params: FaceParams, batch_size: int = DETECTION_BATCH, *, bgr: bool = False
) -> list[list[Face]]:
    """Faces in each of several RGB frames (BGR, as OpenCV decodes them, with `bgr`) that pass the probability
    and size thresholds, at most `max_faces`, largest first; frames of one size run through MTCNN together
    (~15% faster).
    """
    found = _detect_all(detector, frames, params, params.min_prob, batch_size, bgr=bgr)
    return [faces[: params.max_faces] for faces in found]


def _detect_all(
    detector,
    frames: list[np.ndarray],
    params: FaceParams,
    min_prob: float,
    batch_size: int = DETECTION_BATCH,
    *,
    bgr: bool,
) -> list[list[Face]]:
    """Every face at `min_prob` or above and at least `min_size`, largest first, in each frame.

    BGR frames are converted after the downscale: no full-resolution RGB copy of every frame is made.
    """
    results: list[list[Face]] = [[] for _ in frames]
    by_shape: dict[tuple, list[int]] = {}
    for number, frame in enumerate(frames):
        by_shape.setdefault(frame.shape, []).append(number)
    for (height, width, _), numbers in by_shape.items():
        scale = min(1.0, params.max_side / max(height, width))
        size = (round(width * scale), round(height * scale))
        min_pixels = params.min_size * min(height, width)
        # No point building pyramid levels for faces the size threshold would drop anyway.
        detector.min_face_size = max(12, int(min_pixels * scale * 0.8))
        if min(size) < detector.min_face_size:
            # Smaller than the smallest face MTCNN looks for (a tiny or extremely thin frame): its image pyramid
            # would be empty, and facenet-pytorch fails on that instead of finding nothing.
            continue
        step = max(1, min(batch_size, DETECTION_PIXELS // max(1, size[0] * size[1])))
        for start in range(0, len(numbers), step):
            chunk = numbers[start : start + step]
            images = np.stack([_detection_image(frames[n], size, bgr) for n in chunk])
            boxes, probs, landmarks = detector.detect(images, landmarks=True)
            for n, frame_boxes, frame_probs, frame_points in zip(chunk, boxes, probs, landmarks):
                faces = _faces_in_frame_pixels(frame_boxes, frame_probs, frame_points, scale, min_pixels, min_prob)
                results[n] = sorted(faces, key=lambda f: f.size, reverse=True)
    return results


def _detection_image(frame: np.ndarray, size: tuple[int, int], bgr: bool) -> np.ndarray:
    if frame.shape[1::-1] != size:
        frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) if bgr else frame


def _faces_in_frame_pixels(
    boxes, probs, landmarks, scale: float, min_pixels: float, min_prob: float, offset: tuple = (0.0, 0.0)
) -> list[Face]:
    """MTCNN's detections in frame pixels, from an image that is the frame scaled by `scale` (a region of it
    whose corner is frame pixel `offset`); those below `min_prob` or smaller than `min_pixels` dropped."""
    if boxes is None:
        return []
    left, top = offset
    faces = []
    for box, prob, points in zip(boxes, probs, landmarks):
        if prob is None or prob < min_prob:
            continue
        face = Face(
            box=tuple(float(v) / scale + corner for v, corner in zip(box, (left, top, left, top))),
            prob=float(prob),
            landmarks=np.asarray(points, dtype=np.float32) / scale + np.array(offset, np.float32),
        )
        if face.size >= min_pixels:
            faces.append(face)
    return faces


def crop_with_margin(frame: np.ndarray, face: Face, *, margin: float, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A square crop around the face, `1 + margin` times its longer side, resized to `size`.

    Parts of the square outside the frame are filled by replicating the border, so a face at the edge
    keeps its place in the crop. Returns the crop and the landmarks in crop pixels.
    """
    left, top, side = square_around(face.box, 1 + margin)
    scale = size / side
    # One affine warp does crop, padding and resize together, with sub-pixel placement.
    matrix = np.array([[scale, 0, -left * scale], [0, scale, -top * scale]], dtype=np.float32)
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    crop = cv2.warpAffine(frame, matrix, (size, size), flags=interpolation, borderMode=cv2.BORDER_REPLICATE)
    landmarks = (face.landmarks - [left, top]) * scale
    return crop, landmarks.astype(np.float32)


def square_around(box: tuple, scale: float) -> tuple[float, float, float]:
    """(left, top, side) of the square `scale` times the box's longer side, centred on the box."""
    x1, y1, x2, y2 = box
    side = max(x2 - x1, y2 - y1) * scale
    return (x1 + x2) / 2 - side / 2, (y1 + y2) / 2 - side / 2, side


def box_iou(a: tuple, b: tuple) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def link_tracks(faces_per_frame: list[list[Face]], iou_threshold: float) -> list[list[int]]:
    """Track ids for each face: a face continues the track whose latest box overlaps it most.

    Greedy matching frame to frame, best overlaps first; a face no track claims starts a new one, so each
    person in the video gets a track id and a verdict can be given per person.
    """
    last_box: dict[int, tuple] = {}
    ids_per_frame = []
    for faces in faces_per_frame:
        pairs = sorted(
            ((box_iou(face.box, box), i, track) for i, face in enumerate(faces) for track, box in last_box.items()),
            reverse=True,
        )
        ids: list[int | None] = [None] * len(faces)
        taken = set()
        for overlap, i, track in pairs:
            if overlap < iou_threshold:
                break
            if ids[i] is None and track not in taken:
                ids[i] = track
                taken.add(track)
        for i, face in enumerate(faces):
            if ids[i] is None:
                ids[i] = len(last_box)
            last_box[ids[i]] = face.box
        ids_per_frame.append(ids)
    return ids_per_frame
