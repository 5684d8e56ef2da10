"""Shared fixtures: tiny videos made on the spot, and the shared real clips when they are present."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from deepfake.config import AggregationParams, FaceParams, FrameSampling
from deepfake.serving.video_detector import DetectorConfig
from deepfake.video.probe import write_video

# Property-based tests: deterministic example sets in CI (no flaky discoveries, no example database in the
# project); DEEPFAKE_FUZZ_SCALE multiplies every test's example count for a longer search by hand.
settings.register_profile(
    "ci",
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.load_profile("ci")
FUZZ_SCALE = float(os.environ.get("DEEPFAKE_FUZZ_SCALE", "1"))


def examples(count: int) -> settings:
    """`count` hypothesis examples, times DEEPFAKE_FUZZ_SCALE."""
    return settings(max_examples=max(1, int(count * FUZZ_SCALE)))


os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("DEEPFAKE_SHARED_DATA", PROJECT_ROOT.parent / "shared" / "data"))
SHARED_VIDEOS = SHARED_DATA / "real-videos"


# A small registered model's settings: 64 px crops and inputs, 4 frames a video, so tests that score videos are fast.
CONFIG = DetectorConfig(
    backbone="resnet18",
    input_size=64,
    sampling=FrameSampling(per_video=4),
    faces=FaceParams(crop_size=64),
    aggregation=AggregationParams(strategy="mean"),
)


@pytest.fixture(autouse=True)
def restore_tracking_uri():
    """mlflow.set_tracking_uri (called by `connect`) also sets MLFLOW_TRACKING_URI in os.environ, so one test
    that connects would point every later test's subprocesses (dvc repro, deepfake serve) at its registry."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def random_weights(path: Path, seed: int = 0) -> Path:
    """A random-init resnet18 classifier's state_dict: the real model's shape, no training needed."""
    import torch

    from deepfake.model.classifier import build_classifier

    torch.manual_seed(seed)
    model, _ = build_classifier("resnet18", "none")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return path


def register_version(weights: Path, auc: float | None, *, name: str = "deepfake-detector"):
    """Log `weights` with CONFIG as the video-level model, register a version and run the promotion gate."""
    import mlflow

    from deepfake.evaluation.card import model_card  # noqa: F401  (the stage's card is tested in test_pipeline)
    from deepfake.tracking import connect, gate, log_detector

    connect(weights.parent)
    with mlflow.start_run():
        info = log_detector(weights, CONFIG.to_dict(), "# card\n")
    version = mlflow.register_model(info.model_uri, name).version
    return gate(name, version, "video.auc", auc)


def make_clip(
    path: Path, *, frames: int = 6, size: tuple[int, int] = (64, 48), fps: float = 10.0, seed: int = 0
) -> Path:
    """A small mp4 of moving noise: cheap, valid, and different for every seed."""
    rng = np.random.default_rng(seed)
    width, height = size
    images = [rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8) for _ in range(frames)]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_video(path, images, fps)
    return path


@pytest.fixture
def clip_factory(tmp_path):
    """Call with a path relative to a temporary dataset root; returns the absolute path of a new clip."""
    counter = iter(range(10_000))

    def make(relpath: str, **kwargs) -> Path:
        kwargs.setdefault("seed", next(counter))
        return make_clip(tmp_path / relpath, **kwargs)

    return make


@pytest.fixture
def ffmpeg() -> str:
    """The ffmpeg binary shipped in the imageio-ffmpeg wheel, to craft files OpenCV cannot write."""
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg", reason="imageio-ffmpeg (a dev dependency) not installed")
    return imageio_ffmpeg.get_ffmpeg_exe()


@pytest.fixture(scope="session")
def shared_videos() -> Path:
    if not (SHARED_VIDEOS / "metadata.json").is_file():
        pytest.skip(f"shared real clips not found at {SHARED_VIDEOS} (set DEEPFAKE_SHARED_DATA)")
    return SHARED_VIDEOS


@dataclass
class Server:
    """A running `deepfake serve` with a temporary SQLite registry (v1 @champion, v2 @challenger)."""

    url: str
    port: int
    root: Path
    uploads: Path  # parent of the per-request private upload folders: empty whenever no request is in flight
    env: dict  # the environment it runs with (MLFLOW_TRACKING_URI of its registry)
    clips: list[Path]  # clips with a face
    noise: Path  # a clip without a face


@pytest.fixture(scope="session")
def served(tmp_path_factory) -> Iterator[Server]:
    """`deepfake serve` in a subprocess on a free port: a 1 MB upload limit, the alias checked every 0.2 s."""
    from deepfake.config import SampleSpec
    from deepfake.data.sample import make_sample

    root = tmp_path_factory.mktemp("serve")
    make_sample(root / "clips", spec=SampleSpec(clips_per_face=1, fakes_per_real=0, frames=8, width=320, height=240))
    noise = make_clip(root / "noise.mp4", frames=8, size=(160, 120))
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = env["MLFLOW_TRACKING_URI"]
    try:
        import mlflow

        from deepfake.config import RegisterParams
        from deepfake.tracking import gate

        MODEL_NAME = RegisterParams().name  # noqa: N806

        assert register_version(random_weights(root / "model.pt"), 0.8).alias == "champion"
        # Version 2: the same logged model registered again (cheaper than logging it twice).
        source = mlflow.MlflowClient().get_model_version(MODEL_NAME, "1").source
        assert (
            gate(MODEL_NAME, mlflow.register_model(source, MODEL_NAME).version, "video.auc", 0.7).alias == "challenger"
        )
    finally:
        if previous is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = previous
    port = free_port()
    log_path = root / "server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "deepfake.cli",
                "serve",
                "--port",
                str(port),
                "--upload-dir",
                str(root / "uploads"),
                "--max-upload-mb",
                "1",
                "--refresh",
                "0.2",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=root,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, process, log_path)
        yield Server(url, port, root, root / "uploads", env, sorted((root / "clips").glob("*.mp4")), noise)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def wait_until_up(url: str, process: subprocess.Popen, log_path: Path) -> None:
    import requests

    for _ in range(600):
        if process.poll() is not None:
            pytest.fail(f"deepfake serve exited ({process.returncode}):\n{log_path.read_text()[-3000:]}")
        try:
            if requests.get(f"{url}/v1/health", timeout=2).ok:
                return
        except requests.ConnectionError:
            time.sleep(0.2)
    pytest.fail(f"deepfake serve did not answer:\n{log_path.read_text()[-3000:]}")
