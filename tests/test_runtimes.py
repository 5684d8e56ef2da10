"""The fast paths agree with their references: MTCNN on ONNX Runtime with facenet-pytorch's, tracked detection
with whole-frame detection on every frame, the classifier on ONNX Runtime with PyTorch's; and the exported
networks are cached."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from skimage import data

from deepfake.config import FaceParams, FrameSampling
from deepfake.images import stored
from deepfake.onnx_runtime import cached_export
from deepfake.video.face_detection import box_iou, detect_faces_batch, faces_in_frames, load_face_detector
from deepfake.video.frames import read_frames, sample_frame_indices
from deepfake.video.probe import probe_video
from tests.conftest import SHARED_VIDEOS, random_weights

# A talking head, a crowded street scene, a DFDC fake whose swapped face MTCNN finds with low confidence.
CLIPS = (
    "ffpp-c40--actors_08__podium_speech_happy.mp4",
    "facenet-pytorch--video.mp4",
    "deepfake-detect--abofeumbvv.mp4",
)


def shared_frames(name: str, count: int) -> list[tuple[int, float, np.ndarray]]:
    path = SHARED_VIDEOS / "videos" / name
    if not path.is_file():
        pytest.skip(f"shared clip {path} not found")
    info = probe_video(path)
    return list(read_frames(path, sample_frame_indices(info.frames, info.fps, FrameSampling(per_video=count))))


@pytest.fixture(scope="module")
def detectors():
    return load_face_detector("onnx"), load_face_detector("torch")


@pytest.mark.parametrize("name", CLIPS)
def test_onnx_mtcnn_finds_the_faces_facenet_pytorch_finds(detectors, name):
    onnx, torch = detectors
    frames = [frame for *_, frame in shared_frames(name, 6)]
    params = FaceParams(min_prob=0.5, min_size=0.0)  # every face either one finds, weak ones too
    found_onnx = detect_faces_batch(onnx, frames, params, bgr=True)
    found_torch = detect_faces_batch(torch, frames, params, bgr=True)
    assert sum(map(len, found_torch)) > 0
    for ours, reference in zip(found_onnx, found_torch):
        assert len(ours) == len(reference)
        for face in reference:
            match = max(ours, key=lambda other: box_iou(other.box, face.box))
            assert box_iou(match.box, face.box) > 0.9
            assert abs(match.prob - face.prob) < 0.01
            assert np.abs(match.landmarks - face.landmarks).max() < 0.05 * face.size


def test_onnx_mtcnn_on_a_photo_and_on_nothing(detectors):
    onnx, torch = detectors
    [[ours]], [[reference]] = (detect_faces_batch(d, [data.astronaut()], FaceParams()) for d in (onnx, torch))
    assert box_iou(ours.box, reference.box) > 0.95
    blank = np.full((240, 320, 3), 128, np.uint8)
    assert detect_faces_batch(onnx, [blank], FaceParams()) == [[]]


class CountingDetector:
    """A detector that counts the whole-frame calls (detection images larger than a tracking region)."""

    def __init__(self, inner) -> None:
        self.inner, self.whole = inner, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __setattr__(self, name, value):
        if name == "min_face_size":
            self.inner.min_face_size = value
        else:
            super().__setattr__(name, value)

    def detect(self, images, landmarks=True):
        self.whole += np.asarray(images).shape[1] > 192
        return self.inner.detect(images, landmarks=landmarks)


@pytest.mark.parametrize("name", CLIPS[:2])
def test_tracked_detection_keeps_the_faces_of_whole_frame_detection(detectors, name):
    frames = shared_frames(name, 24)
    every = list(faces_in_frames(detectors[0], frames, FaceParams(detect_every=1)))
    counting = CountingDetector(detectors[0])
    tracked = list(faces_in_frames(counting, frames, FaceParams(detect_every=4)))
    assert [f.index for f in tracked] == [f.index for f in every]
    overlaps = [
        max([box_iou(face.box, other.box) for other in later.faces], default=0.0)
        for earlier, later in zip(every, tracked)
        for face in earlier.faces
    ]
    assert len(overlaps) >= 24
    assert np.mean(np.array(overlaps) > 0.7) >= 0.95  # the same faces, boxes close
    assert sum(len(f.faces) for f in tracked) >= 0.95 * sum(len(f.faces) for f in every)
    assert counting.whole < 0.6 * len(frames)  # most frames were searched only around their faces
    assert all(crop.shape == (224, 224, 3) for f in tracked for crop in f.crops)


def test_a_face_that_moves_away_sends_the_frame_back_to_whole_detection(detectors):
    image = np.ascontiguousarray(data.astronaut()[..., ::-1])  # BGR, face near the top left
    canvas = np.full((512, 1024, 3), 90, np.uint8)
    left, right = canvas.copy(), canvas.copy()
    left[:, :512], right[:, 512:] = image, image
    counting = CountingDetector(detectors[0])
    frames = [(0, 0.0, left), (1, 0.1, left), (2, 0.2, right), (3, 0.3, right)]
    found = list(faces_in_frames(counting, frames, FaceParams(detect_every=10)))
    assert [len(f.faces) for f in found] == [1, 1, 1, 1]
    assert counting.whole == 2  # the first frame, and the frame where the face was not where it had been
    assert found[2].faces[0].box[0] > 512 and found[1].faces[0].box[0] < 512


@pytest.mark.parametrize("detect_every", [1, 4])
def test_a_face_swap_mtcnn_doubts_is_kept_while_it_continues_a_confident_face(detectors, detect_every):
    # The DFDC fake's swapped face: MTCNN's probability wanders between 0.73 and 0.97 from frame to frame.
    frames = shared_frames(CLIPS[2], 32)
    strict = list(faces_in_frames(detectors[0], frames, FaceParams(detect_every=detect_every, keep_prob=0.9)))
    kept = list(faces_in_frames(detectors[0], frames, FaceParams(detect_every=detect_every, keep_prob=0.7)))
    assert sum(map(bool, (f.faces for f in kept))) >= sum(map(bool, (f.faces for f in strict))) + 8
    previous = []
    for frame in kept:
        for face in frame.faces:
            assert face.prob >= 0.7
            # Below min_prob only as the continuation of a face kept in the frame before.
            assert face.prob >= 0.9 or max((box_iou(face.box, p.box) for p in previous), default=0) >= 0.2
        previous = frame.faces


def test_a_face_mtcnn_doubts_in_every_frame_is_followed_not_searched_for_in_the_whole_frame(detectors):
    # Before the swapped face first reaches min_prob, MTCNN finds it at 0.7-0.85 frame after frame: it is followed
    # around its box (cheap) rather than searched for in each whole frame, and kept only once it reaches min_prob.
    frames = [(index, seconds, stored(frame, 95)) for index, seconds, frame in shared_frames(CLIPS[2], 32)]  # as stored
    counting = CountingDetector(detectors[0])
    found = list(faces_in_frames(counting, frames, FaceParams(detect_every=4)))
    assert counting.whole <= 15  # 19 of the 32 when every frame without a kept face was searched whole
    assert sum(map(bool, (f.faces for f in found))) >= 21  # and 19 faces
    previous = []
    for frame in found:
        for face in frame.faces:
            assert face.prob >= 0.9 or max((box_iou(face.box, p.box) for p in previous), default=0) >= 0.2
        previous = frame.faces


@pytest.mark.parametrize("name", CLIPS[1:])
@pytest.mark.parametrize("detect_every", [1, 4])
def test_frames_stored_only_where_read_give_the_faces_and_crops_of_stored_frames(detectors, name, detect_every):
    # Inference sees decoded frames as the frames stage stores them; making that round trip only around the faces
    # a frame is searched for must change nothing: the same faces, probabilities and crops, to the bit.
    decoded = shared_frames(name, 16)
    params = FaceParams(detect_every=detect_every)
    reference = list(faces_in_frames(detectors[0], [(i, s, stored(f, 95)) for i, s, f in decoded], params))
    windowed = list(faces_in_frames(detectors[0], decoded, params, stored_as=95))
    assert sum(len(f.faces) for f in reference) >= 8
    for ours, theirs in zip(windowed, reference, strict=True):
        assert [(f.box, f.prob) for f in ours.faces] == [(f.box, f.prob) for f in theirs.faces]
        assert all(np.array_equal(a, b) for a, b in zip(ours.crops, theirs.crops, strict=True))
    unstored = list(faces_in_frames(detectors[0], decoded, params))  # the control: the round trip matters
    assert any(not np.array_equal(a, b) for f, g in zip(unstored, reference) for a, b in zip(f.crops, g.crops))


def test_a_doubtful_detection_alone_is_not_a_face():
    from deepfake.video.face_detection import Face, _continuing

    def face(x, prob):
        return Face((x, 0.0, x + 100.0, 100.0), prob, np.zeros((5, 2), np.float32))

    params = FaceParams(min_prob=0.9, keep_prob=0.7, max_faces=2)
    candidates = [face(0, 0.8), face(500, 0.75), face(900, 0.95), face(1300, 0.99)]
    assert _continuing(candidates, [], params) == candidates[2:]  # nothing to continue: min_prob only
    assert _continuing(candidates, [face(10, 0.95)], params) == [candidates[0], candidates[2]]  # capped at 2
    assert FaceParams(min_prob=0.5, keep_prob=0.7).lowest_prob == 0.5
    with pytest.raises(Exception, match="faces.keep_prob must be between 0 and 1"):
        FaceParams(keep_prob=1.5)


@pytest.mark.parametrize("flip", [True, False])
def test_onnx_classifier_gives_pytorchs_logits(tmp_path, monkeypatch, flip):
    from deepfake.model.classifier import load_classifier
    from deepfake.model.onnx_classifier import OnnxClassifier

    monkeypatch.setenv("DEEPFAKE_CACHE", str(tmp_path / "cache"))
    weights = random_weights(tmp_path / "model.pt")
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 256, (80, 80, 3), dtype=np.uint8) for _ in range(5)]
    reference = load_classifier(weights, "resnet18").face_logits(crops, 64, batch_size=2, flip=flip)
    ours = OnnxClassifier(weights, "resnet18", 64).face_logits(crops, 64, batch_size=2, flip=flip)
    assert ours.shape == (5,) and np.abs(ours - reference).max() < 1e-4
    other = random_weights(tmp_path / "other.pt", seed=1)  # the cache is keyed by the weights' content
    assert np.abs(OnnxClassifier(other, "resnet18", 64).face_logits(crops, 64) - ours).max() > 1e-3
    assert len(list((tmp_path / "cache").glob("classifier-resnet18-*.onnx"))) == 2


def test_exports_are_made_once_and_never_left_half_written(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPFAKE_CACHE", str(tmp_path))
    calls = []

    def export(path):
        calls.append(path)
        path.write_bytes(b"onnx")

    first = cached_export("net", "k1", export)
    assert cached_export("net", "k1", export) == first and len(calls) == 1 and first.read_bytes() == b"onnx"

    def failing(path):
        path.write_bytes(b"half")
        raise RuntimeError("exporter crashed")

    with pytest.raises(RuntimeError):
        cached_export("net", "k2", failing)
    assert sorted(p.name for p in tmp_path.iterdir()) == [first.name]


def test_runtimes_are_settings_with_a_clear_error():
    from deepfake.config import EvaluateParams
    from deepfake.errors import ConfigError

    with pytest.raises(ConfigError, match="faces.runtime must be one of onnx, torch"):
        FaceParams(runtime="tensorrt")
    with pytest.raises(ConfigError, match="evaluate.runtime must be one of onnx, torch"):
        EvaluateParams(runtime="gpu")
    with pytest.raises(ConfigError, match="faces.detect_every must be at least 1"):
        dataclasses.replace(FaceParams(), detect_every=0)
