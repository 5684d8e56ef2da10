"""Shared fixtures: tiny videos made on the spot, and the shared real clips when they are present."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from deepfake.video import write_video

os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("DEEPFAKE_SHARED_DATA", PROJECT_ROOT.parent / "shared" / "data"))
SHARED_VIDEOS = SHARED_DATA / "real-videos"


def make_clip(path: Path, *, frames: int = 6, size: tuple[int, int] = (64, 48), fps: float = 10.0, seed: int = 0) -> Path:
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
