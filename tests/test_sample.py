"""The offline sample data: deterministic, real faces MTCNN finds, fakes that differ where the face is."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil

import cv2
import numpy as np
import pytest

from deepfake.config import SampleSpec
from deepfake.data.sample import MANIPULATIONS, make_sample
from deepfake.errors import SampleError

SMALL = SampleSpec(clips_per_face=2, fakes_per_real=1, frames=8, width=320, height=240, seed=3)


def _digests(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _frames(path, indices):
    capture = cv2.VideoCapture(str(path))
    frames = []
    for index in indices:
        capture.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, frame = capture.read()
        assert ok, f"{path} frame {index} does not decode"
        frames.append(frame)
    capture.release()
    return frames


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    out = tmp_path_factory.mktemp("sample") / "clips"
    metadata = make_sample(out, spec=SMALL)
    return out, metadata


@pytest.fixture(scope="module")
def detector():
    from facenet_pytorch import MTCNN

    return MTCNN(keep_all=True, device="cpu")


def test_sample_writes_labelled_clips_and_metadata(sample):
    out, metadata = sample
    assert json.loads((out / "metadata.json").read_text()) == metadata
    real = [name for name, entry in metadata.items() if entry["label"] == "REAL"]
    fake = [name for name, entry in metadata.items() if entry["label"] == "FAKE"]
    assert len(real) == 2 * 2 and len(fake) == 4  # two bundled photos, two takes each, one fake per take
    for name in fake:
        assert metadata[name]["original"] in real
        assert metadata[name]["manipulation"] in MANIPULATIONS
    assert {metadata[name]["manipulation"] for name in fake} == set(MANIPULATIONS)
    for name in metadata:
        capture = cv2.VideoCapture(str(out / name))
        assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == SMALL.frames
        assert (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (320, 240)


def test_sample_is_deterministic_for_a_seed(sample, tmp_path):
    out, _ = sample
    again = tmp_path / "again"
    make_sample(again, spec=SMALL)
    assert _digests(again) == _digests(out)
    other = tmp_path / "other"
    make_sample(other, spec=SampleSpec(**{**SMALL.__dict__, "seed": 4}))
    assert _digests(other)["metadata.json"] == _digests(out)["metadata.json"]
    assert _digests(other) != _digests(out)


def test_mtcnn_finds_the_face_in_every_sampled_frame(sample, detector):
    out, metadata = sample
    for name in metadata:
        for frame in _frames(out / name, [0, SMALL.frames // 2, SMALL.frames - 1]):
            boxes, probs = detector.detect(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
            assert boxes is not None, f"no face in {name}"
            assert max(probs) > 0.95, f"{name}: best face probability {max(probs):.3f}"


def test_fakes_differ_from_their_original_inside_the_face(sample, detector):
    out, metadata = sample
    for name, entry in metadata.items():
        if entry["label"] != "FAKE":
            continue
        [fake_frame] = _frames(out / name, [SMALL.frames // 2])
        [real_frame] = _frames(out / entry["original"], [SMALL.frames // 2])
        boxes, _ = detector.detect(cv2.cvtColor(real_frame, cv2.COLOR_BGR2RGB))
        x1, y1, x2, y2 = np.clip(boxes[0], 0, None).astype(int)
        difference = np.abs(fake_frame.astype(np.float32) - real_frame.astype(np.float32)).mean(axis=2)
        inside = difference[y1:y2, x1:x2].mean()
        outside_mask = np.ones_like(difference, dtype=bool)
        outside_mask[max(0, y1 - 20) : y2 + 20, max(0, x1 - 20) : x2 + 20] = False
        outside = difference[outside_mask].mean()
        assert inside > 3 * outside, f"{name}: face differs by {inside:.1f}, background by {outside:.1f}"


def test_faces_folder_uses_photos_with_faces_and_reports_the_rest(tmp_path, caplog):
    from skimage import data

    faces = tmp_path / "faces"
    faces.mkdir()
    cv2.imwrite(str(faces / "astronaut.png"), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(faces / "coins.png"), data.coins())  # no face in it
    (faces / "broken.jpg").write_bytes(b"not an image")
    with caplog.at_level(logging.INFO):
        metadata = make_sample(tmp_path / "out", SampleSpec(faces=str(faces), clips_per_face=1, frames=4))
    messages = caplog.messages
    assert {entry["face"] for entry in metadata.values()} == {"astronaut"}
    assert any("broken.jpg" in m and "not a readable image" in m for m in messages)
    assert any("coins" in m and "no face" in m for m in messages)


def test_faces_folder_without_any_face_is_a_clear_error(tmp_path):
    from skimage import data

    faces = tmp_path / "faces"
    faces.mkdir()
    cv2.imwrite(str(faces / "coins.png"), data.coins())
    with pytest.raises(SampleError, match="no photo with a detectable face"):
        make_sample(tmp_path / "out", SampleSpec(faces=str(faces), clips_per_face=1, frames=4))
    assert not (tmp_path / "out").exists()
    with pytest.raises(SampleError, match="not found"):
        make_sample(tmp_path / "out", SampleSpec(faces=str(tmp_path / "missing")))


def test_a_run_that_fails_midway_leaves_the_previous_sample_whole(sample, tmp_path, monkeypatch):
    import deepfake.data.sample as sample_module

    out, _ = sample
    copy = tmp_path / "clips"
    shutil.copytree(out, copy)
    before = _digests(copy)
    written = []

    def write_then_fail(path, frames, fps):
        if len(written) == 2:
            raise OSError("disk full")
        written.append(path)
        sample_module.write_video.__wrapped__(path, frames, fps)

    write_then_fail.__wrapped__ = sample_module.write_video
    monkeypatch.setattr(sample_module, "write_video", write_then_fail)
    with pytest.raises(OSError, match="disk full"):
        make_sample(copy, spec=SMALL)
    assert len(written) == 2
    assert _digests(copy) == before
    assert [p.name for p in tmp_path.iterdir()] == ["clips"]  # the half-written folder is gone
