"""The fault matrix: what happens when the disk fills, a file is corrupt, or MLflow cannot be reached.

Each fault ends in a clear one-line message or a report row naming the file and the reason, and never in a
partial output. (kill -9 during faces and during training: tests/test_extract.py and tests/test_train.py;
a transient failure retried: tests/test_parallel.py.)
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from deepfake.atomic import write_json
from deepfake.config import FaceParams, FrameSampling, PoolSettings, SampleSpec
from deepfake.data.dataset import build_dataset
from deepfake.data.sample import make_sample
from deepfake.video.extraction import update_faces, update_frames
from tests.conftest import PROJECT_ROOT, free_port

ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("fault-clips")
    make_sample(root, SampleSpec(clips_per_face=1, fakes_per_real=0, frames=6, width=320, height=240))
    return build_dataset(root).videos


def test_disk_full_while_writing_crops_is_each_videos_error_row_and_leaves_no_crop(clips, tmp_path, monkeypatch):
    import deepfake.video.extraction as extraction

    pool = PoolSettings(workers=1, retries=1, retry_delay_s=0)
    update_frames(clips, tmp_path / "frames", FrameSampling(per_video=3), pool)
    monkeypatch.setattr(extraction, "write_image", disk_full)
    result = update_faces(clips, tmp_path / "frames", tmp_path / "faces", FaceParams(crop_size=64), pool)
    assert set(result.report["status"]) == {"error"} and result.table.empty
    assert result.report["reason"].str.contains("No space left on device").all()
    assert [p for p in (tmp_path / "faces").rglob("*") if p.is_file()] == []  # no crop, record or temporary file


def test_disk_full_while_writing_an_output_leaves_the_old_one_and_says_which_file(tmp_path, monkeypatch):
    """Models, metrics and reports are all written through deepfake.atomic: a failed write keeps the old file."""
    from stages import run

    target = tmp_path / "reports" / "metrics.json"
    write_json({"version": 1}, target)
    real_write_text = Path.write_text

    def half_then_full(self, text, *args, **kwargs):
        real_write_text(self, text[: len(text) // 2], *args, **kwargs)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_text", half_then_full)
    monkeypatch.chdir(PROJECT_ROOT)  # stages.run reads the project's params.yaml
    with pytest.raises(SystemExit) as stopped:
        run("evaluate", lambda config: write_json({"version": 2}, target))
    assert str(stopped.value) == f"evaluate: No space left on device ({target})"
    monkeypatch.undo()
    assert json.loads(target.read_text()) == {"version": 1}
    assert [p.name for p in target.parent.iterdir()] == ["metrics.json"]  # no temporary file left


def test_disk_full_while_saving_the_model_leaves_no_model_file(tmp_path, monkeypatch):
    import torch

    from deepfake.model.classifier import build_classifier
    from deepfake.model.training import save_model

    model, _ = build_classifier("resnet18", "none")
    real_save = torch.save

    def save_half(obj, path, *args, **kwargs):
        real_save({"part": torch.zeros(3)}, path)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", save_half)
    with pytest.raises(OSError) as error:
        save_model(model, tmp_path / "models" / "model.pt")
    assert error.value.errno == errno.ENOSPC and error.value.filename == str(tmp_path / "models" / "model.pt")
    assert list((tmp_path / "models").iterdir()) == []


@pytest.mark.slow
def test_disk_full_while_logging_the_registered_model_registers_nothing(tmp_path, monkeypatch):
    import mlflow

    from deepfake.tracking import connect, log_detector
    from tests.conftest import CONFIG, random_weights

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    connect(tmp_path)
    weights = random_weights(tmp_path / "model.pt")
    import mlflow.pyfunc

    monkeypatch.setattr(mlflow.pyfunc, "log_model", disk_full)
    with mlflow.start_run(), pytest.raises(OSError, match="No space left on device"):
        log_detector(weights, CONFIG.to_dict(), "# card\n")
    assert mlflow.MlflowClient().search_registered_models() == []


def test_a_corrupt_model_file_is_refused_with_a_message(tmp_path):
    from deepfake.errors import WeightsUnavailable
    from deepfake.model.classifier import load_classifier

    for content in (b"", b"not a model at all", b"PK\x03\x04" + bytes(100)):
        (tmp_path / "model.pt").write_bytes(content)
        with pytest.raises(WeightsUnavailable, match="model.pt: not a plain state_dict"):
            load_classifier(tmp_path / "model.pt", "resnet18")


@pytest.mark.parametrize("stage", ["train", "register"])
def test_an_unreachable_tracking_server_stops_train_and_register_at_once_in_one_line(stage, tmp_path):
    uri = f"http://127.0.0.1:{free_port()}"
    (tmp_path / "params.yaml").write_text((PROJECT_ROOT / "params.yaml").read_text())
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PYTHONPATH": str(PROJECT_ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", f"stages.{stage}"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1
    assert f"{stage}: MLflow tracking server {uri} is not reachable" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "models").exists() and not (tmp_path / "reports").exists()


def test_an_unreachable_registry_while_serving_keeps_the_model_in_service(tmp_path, monkeypatch):
    from deepfake.serving.live_model import LiveModel
    from deepfake.serving.loading import LoadedDetector

    loaded = LoadedDetector(detector=None, uri="models:/deepfake-detector/1", version="1", seconds=0.0)
    live = LiveModel("models:/deepfake-detector@champion", loaded, refresh_s=1.0)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'missing-folder' / 'mlflow.db'}")
    import mlflow

    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    mlflow.set_registry_uri(os.environ["MLFLOW_TRACKING_URI"])
    assert live.refresh() is False
    assert live.current is loaded and live.registry_error


@pytest.fixture
def tiny_disk(tmp_path):
    """A 192 KB tmpfs that really fills up; skipped where mounting is not allowed (not root, no privilege)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=192k", "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(
            f"cannot mount a small tmpfs here ({mounted.stderr.strip() or 'mount failed'}); the injected "
            "ENOSPC tests above cover the same paths"
        )
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=False)


def test_a_really_full_disk_while_sampling_frames_leaves_whole_videos_or_error_rows(clips, tiny_disk):
    pool = PoolSettings(workers=1, retries=0, retry_delay_s=0)
    result = update_frames(clips, tiny_disk / "frames", FrameSampling(per_video=6, jpeg_quality=None), pool)
    report = result.report.set_index("video_id")
    assert (report["status"] == "error").any(), "the disk never filled: make it smaller"
    assert report.loc[report["status"] == "error", "reason"].str.contains("No space left on device").all()
    for video_id, row in report.iterrows():  # a video's folder is there whole, or not at all
        folder = tiny_disk / "frames" / video_id
        assert folder.is_dir() == (row["status"] == "ok")
    assert not [p for p in (tiny_disk / "frames").iterdir() if p.name.startswith(".")]  # no temporary folder left
