"""Sample data the project makes itself, offline: short clips of real faces and of manipulated faces.

"Real" clips animate a face photo (camera shake, zoom, rotation, lighting drift, sensor noise, JPEG
recompression). "Fake" clips are the same footage with the face region replaced frame by frame the way
face-swap tools leave it: a warped, colour-shifted or lower-resolution face pasted inside a soft face mask,
with a blending boundary and a little temporal jitter. Global processing is identical for both, so the only
signal separating them is the manipulation itself. Deterministic for a seed.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from deepfake.atomic import atomic_dir
from deepfake.config import SampleSpec
from deepfake.errors import SampleError
from deepfake.images import stored
from deepfake.video.probe import write_video

logger = logging.getLogger(__name__)

MANIPULATIONS = ("face_swap", "expression_warp", "low_res_paste", "colour_blend")
PHOTO_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
MIN_FACE_PROBABILITY = 0.95


@dataclass(frozen=True)
class FacePhoto:
    """A photo (BGR) with its most prominent face: landmarks are left eye, right eye, nose, mouth corners."""

    name: str
    image: np.ndarray
    landmarks: np.ndarray

    @property
    def eye_distance(self) -> float:
        return float(np.linalg.norm(self.landmarks[1] - self.landmarks[0]))

    @property
    def face_centre(self) -> np.ndarray:
        return self.landmarks.mean(axis=0)


def bundled_photos() -> list[tuple[str, np.ndarray]]:
    """Frontal portraits that ship inside installed dependencies (scikit-image, matplotlib), as BGR arrays."""
    from matplotlib import cbook
    from skimage import data

    hopper = cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    return [
        ("astronaut", cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)),
        ("grace_hopper", hopper),
    ]


def photos_from_folder(folder: Path) -> tuple[list[tuple[str, np.ndarray]], list[str]]:
    """Readable images in `folder`, and a message for each file that is not one."""
    photos, problems = [], []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in PHOTO_EXTENSIONS:
            continue
        image = cv2.imread(str(path))
        if image is None:
            problems.append(f"{path}: not a readable image")
        else:
            photos.append((path.stem, image))
    return photos, problems


def locate_faces(photos: list[tuple[str, np.ndarray]]) -> tuple[list[FacePhoto], list[str]]:
    """Find each photo's largest confident face with MTCNN; photos without one are reported, not used."""
    import torch
    from facenet_pytorch import MTCNN

    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    detector = MTCNN(keep_all=True, device="cpu")
    faces, problems = [], []
    for name, image in photos:
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        boxes, probs, landmarks = detector.detect(rgb, landmarks=True)
        if boxes is None:
            problems.append(f"{name}: no face found")
            continue
        confident = [i for i, p in enumerate(probs) if p is not None and p >= MIN_FACE_PROBABILITY]
        if not confident:
            problems.append(f"{name}: no face with probability >= {MIN_FACE_PROBABILITY}")
            continue
        best = max(confident, key=lambda i: (boxes[i][2] - boxes[i][0]) * (boxes[i][3] - boxes[i][1]))
        faces.append(FacePhoto(name=name, image=image, landmarks=np.asarray(landmarks[best], dtype=np.float32)))
    return faces, problems


# ---------------------------------------------------------------- rendering


def face_mask(photo: FacePhoto, *, blur_fraction: float, scale: float = 1.0) -> np.ndarray:
    """A soft elliptical mask over the inner face (eyes to chin), float32 in [0, 1], photo-sized."""
    left_eye, right_eye, _, mouth_left, mouth_right = photo.landmarks
    eyes = (left_eye + right_eye) / 2
    mouth = (mouth_left + mouth_right) / 2
    centre = eyes + 0.45 * (mouth - eyes)
    distance = photo.eye_distance
    axes = (int(distance * 1.05 * scale), int(max(np.linalg.norm(mouth - eyes), distance * 0.6) * 1.55 * scale))
    angle = float(np.degrees(np.arctan2(*(right_eye - left_eye)[::-1])))
    mask = np.zeros(photo.image.shape[:2], np.float32)
    cv2.ellipse(mask, (int(centre[0]), int(centre[1])), axes, angle, 0, 360, 1.0, -1, cv2.LINE_AA)
    sigma = max(1.0, distance * blur_fraction)
    return cv2.GaussianBlur(mask, (0, 0), sigma)


def _colour_shift(image: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    gain = 1 + rng.uniform(-strength, strength, size=3)
    offset = rng.uniform(-strength, strength, size=3) * 60
    return np.clip(image.astype(np.float32) * gain + offset, 0, 255)


def _face_swap(target: FacePhoto, donors: list[FacePhoto], rng: np.random.Generator) -> np.ndarray:
    """Another face aligned onto the target's landmarks, colour-matched only part way, at a lower resolution."""
    others = [d for d in donors if d.name != target.name] or [_mirrored(target)]
    donor = others[int(rng.integers(len(others)))]
    matrix, _ = cv2.estimateAffinePartial2D(donor.landmarks, target.landmarks)
    height, width = target.image.shape[:2]
    aligned = cv2.warpAffine(
        donor.image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101
    )
    mask = face_mask(target, blur_fraction=0.1) > 0.5
    aligned = aligned.astype(np.float32)
    target_mean = target.image[mask].mean(axis=0)
    donor_mean = aligned[mask].mean(axis=0)
    aligned += (target_mean - donor_mean) * rng.uniform(0.5, 0.8)
    return _downscaled(np.clip(aligned, 0, 255), rng.uniform(1.6, 2.5))


def _expression_warp(target: FacePhoto, rng: np.random.Generator) -> np.ndarray:
    """A smooth displacement field over the face, like a re-enacted expression."""
    height, width = target.image.shape[:2]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    centre = target.face_centre
    radius = target.eye_distance * 1.2
    falloff = np.exp(-(((xs - centre[0]) ** 2 + (ys - centre[1]) ** 2) / (2 * radius**2)))
    amplitude = target.eye_distance * rng.uniform(0.06, 0.12)
    phase = rng.uniform(0, 2 * np.pi, size=2)
    dx = amplitude * falloff * np.sin(2 * np.pi * ys / radius + phase[0])
    dy = amplitude * falloff * np.sin(2 * np.pi * xs / radius + phase[1])
    warped = cv2.remap(
        target.image,
        (xs + dx).astype(np.float32),
        (ys + dy).astype(np.float32),
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REFLECT101,
    )
    return _downscaled(_colour_shift(warped, rng, 0.04), rng.uniform(1.3, 1.8))


def _low_res_paste(target: FacePhoto, rng: np.random.Generator) -> np.ndarray:
    return _downscaled(_colour_shift(target.image, rng, 0.03), rng.uniform(2.5, 4.0))


def _colour_blend(target: FacePhoto, rng: np.random.Generator) -> np.ndarray:
    smoothed = cv2.bilateralFilter(target.image, 9, 40, 5)
    return _colour_shift(smoothed, rng, 0.12)


def _downscaled(image: np.ndarray, factor: float) -> np.ndarray:
    height, width = image.shape[:2]
    small = cv2.resize(image, (max(1, int(width / factor)), max(1, int(height / factor))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def _mirrored(photo: FacePhoto) -> FacePhoto:
    width = photo.image.shape[1]
    points = photo.landmarks.copy()
    points[:, 0] = width - 1 - points[:, 0]
    points = points[[1, 0, 2, 4, 3]]  # left and right swap places in a mirror
    return FacePhoto(name=f"{photo.name}_mirrored", image=np.ascontiguousarray(photo.image[:, ::-1]), landmarks=points)


def manipulated_layer(kind: str, target: FacePhoto, donors: list[FacePhoto], rng: np.random.Generator):
    """The manipulated photo for `kind` and the soft mask it is pasted through."""
    makers: dict[str, Callable[[], np.ndarray]] = {
        "face_swap": lambda: _face_swap(target, donors, rng),
        "expression_warp": lambda: _expression_warp(target, rng),
        "low_res_paste": lambda: _low_res_paste(target, rng),
        "colour_blend": lambda: _colour_blend(target, rng),
    }
    if kind not in makers:
        raise SampleError(f"unknown manipulation {kind!r}; choose from {', '.join(MANIPULATIONS)}")
    blur = {"colour_blend": 0.04}.get(kind, rng.uniform(0.08, 0.18))
    return makers[kind]().astype(np.float32), face_mask(target, blur_fraction=blur, scale=rng.uniform(0.95, 1.1))


@dataclass(frozen=True)
class CameraPath:
    """Per-frame similarity transforms (photo → frame) and photometric settings of one clip."""

    matrices: np.ndarray  # (frames, 2, 3)
    gains: np.ndarray  # (frames,)
    noise_sigma: float
    jpeg_quality: int


def camera_path(photo: FacePhoto, spec: SampleSpec, rng: np.random.Generator) -> CameraPath:
    n = spec.frames
    t = np.linspace(0, 1, n)
    face_height = photo.eye_distance * 2.6
    scale0 = spec.height * rng.uniform(0.40, 0.55) / face_height
    zoom = 1 + rng.uniform(-0.12, 0.12) * t
    angle = rng.uniform(-4, 4) * np.sin(2 * np.pi * rng.uniform(0.3, 1.0) * t + rng.uniform(0, 2 * np.pi))
    shake = np.cumsum(rng.normal(0, 1.2, size=(n, 2)), axis=0)
    shake = cv2.GaussianBlur(shake.astype(np.float32), (1, 0), 2).reshape(n, 2) if n > 1 else shake
    anchor = np.array([spec.width / 2, spec.height / 2]) + rng.uniform(-0.1, 0.1, size=2) * [spec.width, spec.height]
    matrices = []
    for i in range(n):
        matrix = cv2.getRotationMatrix2D(tuple(map(float, photo.face_centre)), float(angle[i]), float(scale0 * zoom[i]))
        matrix[:, 2] += anchor + shake[i] - photo.face_centre
        matrices.append(matrix)
    gains = 1 + rng.uniform(0.05, 0.2) * np.sin(2 * np.pi * t * rng.uniform(0.5, 1.5) + rng.uniform(0, 2 * np.pi))
    return CameraPath(np.array(matrices), gains, float(rng.uniform(1.5, 4.0)), int(rng.integers(60, 92)))


def render_clip(
    photo: FacePhoto,
    path: CameraPath,
    spec: SampleSpec,
    rng: np.random.Generator,
    layer: np.ndarray | None = None,
    mask: np.ndarray | None = None,
) -> list[np.ndarray]:
    """Frames of the photo filmed along `path`; with a layer, it is pasted through the mask in every frame."""
    size = (spec.width, spec.height)
    frames = []
    for matrix, gain in zip(path.matrices, path.gains):
        frame = cv2.warpAffine(photo.image, matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
        frame = frame.astype(np.float32)
        if layer is not None:
            # Swaps are pasted per frame, so they wobble a little against the head: jitter the pasted part.
            jittered = matrix.copy()
            jittered[:, 2] += rng.normal(0, 0.6, size=2)
            pasted = cv2.warpAffine(layer, jittered, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
            alpha = cv2.warpAffine(mask, jittered, size, flags=cv2.INTER_LINEAR)[..., None]
            frame = frame * (1 - alpha) + pasted * alpha
        frame = frame * gain + rng.normal(0, path.noise_sigma, size=frame.shape)
        frame = np.clip(frame, 0, 255).astype(np.uint8)
        frames.append(stored(frame, path.jpeg_quality))  # the recompression every uploaded video went through
    return frames


def make_sample(out: str | os.PathLike, spec: SampleSpec = SampleSpec()) -> dict:
    """Write clips and a DFDC-style metadata.json to `out` (replaced whole, atomically); return the metadata.

    The faces come from the photos in `spec.faces`, or from the portraits bundled with dependencies."""
    faces = spec.faces
    if faces:
        folder = Path(faces)
        if not folder.is_dir():
            raise SampleError(f"{folder}: face photo folder not found")
        photos, problems = photos_from_folder(folder)
    else:
        photos, problems = bundled_photos(), []
    located, unlocated = locate_faces(photos)
    for problem in problems + unlocated:
        logger.warning("skipped face photo %s", problem)
    if not located:
        raise SampleError(f"{faces or 'bundled photos'}: no photo with a detectable face")

    metadata: dict[str, dict] = {}
    with atomic_dir(out) as folder:
        clip_number = 0
        for photo in located:
            for take in range(spec.clips_per_face):
                rng = np.random.default_rng([spec.seed, clip_number])
                path = camera_path(photo, spec, rng)
                real_name = f"{photo.name}_{take}.mp4"
                write_video(folder / real_name, render_clip(photo, path, spec, rng), spec.fps)
                metadata[real_name] = {"label": "REAL", "original": None, "face": photo.name}
                for fake in range(spec.fakes_per_real):
                    kind = MANIPULATIONS[(clip_number + fake) % len(MANIPULATIONS)]
                    layer, mask = manipulated_layer(kind, photo, located, rng)
                    fake_name = f"{photo.name}_{take}_{kind}.mp4"
                    write_video(folder / fake_name, render_clip(photo, path, spec, rng, layer, mask), spec.fps)
                    metadata[fake_name] = {
                        "label": "FAKE",
                        "original": real_name,
                        "face": photo.name,
                        "manipulation": kind,
                    }
                clip_number += 1
        (folder / "metadata.json").write_text(json.dumps(metadata, indent=1) + "\n", encoding="utf-8")
    logger.info(
        "wrote %d clips (%d fake) to %s", len(metadata), sum(m["label"] == "FAKE" for m in metadata.values()), out
    )
    return metadata
