"""The quality benchmark's training half never trains on a video it scores."""

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import PROJECT_ROOT


@pytest.fixture(scope="module")
def quality():
    spec = importlib.util.spec_from_file_location("quality", PROJECT_ROOT / "bench" / "quality.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_videos_and_their_groups_are_held_out_of_training(quality, tmp_path):
    videos = pd.DataFrame(
        {
            "video_id": ["orig", "fake", "other", "photo"],
            "relpath": ["videos/orig.mp4", "videos/fake.mp4", "videos/other.mp4", "images/photo.jpg"],
            "group": ["g1", "g1", "g2", "g3"],
        }
    ).assign(path=lambda t: [str(tmp_path / r) for r in t["relpath"]])
    faces = pd.DataFrame({"video_id": ["orig", "orig", "fake", "other", "photo"], "crop": list("abcde")})
    # The benchmark names only the fake, by a path spelt differently: its original goes with it.
    sets = {"pairs": pd.DataFrame({"path": [str(tmp_path / "videos" / "sub" / ".." / "fake.mp4")]})}

    kept, held_out = quality.without_benchmark_videos(faces, videos, sets)

    assert list(kept["crop"]) == ["d", "e"]
    assert held_out == ["videos/fake.mp4", "videos/orig.mp4"]


def test_nothing_is_held_out_when_no_benchmark_video_is_in_the_workspace(quality, tmp_path):
    videos = pd.DataFrame({"video_id": ["a"], "relpath": ["videos/a.mp4"], "group": ["g"], "path": [str(tmp_path)]})
    faces = pd.DataFrame({"video_id": ["a"], "crop": ["x"]})

    kept, held_out = quality.without_benchmark_videos(faces, videos, {"s": pd.DataFrame({"path": ["/elsewhere"]})})

    assert kept.equals(faces) and held_out == []


def test_the_ffpp_originals_the_benchmark_scores_are_real_clips_of_real_videos(quality):
    """Why the hold-out exists: the FF++ pairs' originals are REAL clips in the folder the shared model trains on."""
    if not (quality.SHARED / "real-videos").is_dir():
        pytest.skip(f"shared data not found at {quality.SHARED}")
    ffpp = quality.ffpp_set()
    originals = ffpp[ffpp["label"] == "REAL"]
    assert len(originals) >= 6
    assert all(Path(path).parent == quality.SHARED / "real-videos" / "videos" for path in originals["path"])
    assert set(ffpp.loc[ffpp["label"] == "FAKE", "original"]) <= set(originals["file"])
