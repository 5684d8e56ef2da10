"""The frames and faces stages' per-video machinery: outputs, incremental reruns, failures, interruption."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cv2
import pandas as pd
import pytest

from deepfake.config import FaceParams, FrameSampling, PoolSettings, SampleSpec
from deepfake.data.dataset import build_dataset
from deepfake.data.sample import make_sample
from deepfake.video.extraction import FACE_COLUMNS, update_faces, update_frames
from tests.conftest import PROJECT_ROOT, make_clip

SAMPLING = FrameSampling(per_video=4)
PARAMS = FaceParams(crop_size=112)
INLINE = PoolSettings(workers=1, retry_delay_s=0)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Four sample clips (two real faces, two fakes of them) and a face-less noise clip, as a videos table."""
    root = tmp_path_factory.mktemp("clips")
    make_sample(root, spec=SampleSpec(clips_per_face=1, frames=8, width=320, height=240))
    make_clip(root / "noise.mp4", frames=8, size=(160, 120))
    metadata = json.loads((root / "metadata.json").read_text())
    metadata["noise.mp4"] = {"label": "REAL"}
    (root / "metadata.json").write_text(json.dumps(metadata))
    videos = build_dataset(root).videos
    assert len(videos) == 5
    return videos


def run_both(videos, work: Path, params=PARAMS, pool=INLINE):
    frames = update_frames(videos, work / "frames", SAMPLING, pool)
    faces = update_faces(videos, work / "frames", work / "faces", params, pool)
    return frames, faces


def files_under(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def test_frames_and_faces_of_a_dataset(clips, tmp_path):
    frames, faces = run_both(clips, tmp_path)
    assert len(frames.table) == 4 * len(clips) and set(frames.report["status"]) == {"ok"}
    for row in frames.table.itertuples():
        assert cv2.imread(str(tmp_path / "frames" / row.file)).shape == (
            (120, 160, 3) if row.video_id.startswith("noise") else (240, 320, 3)
        )

    table, report = faces.table, faces.report.set_index("video_id")
    assert list(table.columns) == FACE_COLUMNS
    noise = clips.loc[clips["relpath"] == "noise.mp4", "video_id"].item()
    assert report.loc[noise, "status"] == "no_face" and "no face" in report.loc[noise, "reason"]
    with_faces = report.drop(noise)
    assert set(with_faces["status"]) == {"ok"} and (with_faces["frames_with_face"] == 4).all()
    assert (with_faces["tracks"] == 1).all()  # one person per clip, followed across frames
    # Crops sit in the folder of their label and nowhere else.
    labels = clips.set_index("video_id")["label"]
    assert all(crop.startswith(labels[video].lower() + "/") for video, crop in zip(table["video_id"], table["crop"]))
    crops = {p for p in files_under(tmp_path / "faces") if p.startswith(("real/", "fake/"))}
    assert crops == set(table["crop"])
    for row in table.head(3).itertuples():
        assert cv2.imread(str(tmp_path / "faces" / row.crop)).shape == (112, 112, 3)
        assert len(json.loads(row.landmarks)) == 10
    # Split, label and group come from the videos table.
    merged = table.merge(clips[["video_id", "split", "group"]], on="video_id", suffixes=("", "_video"))
    assert (merged["split"] == merged["split_video"]).all() and (merged["group"] == merged["group_video"]).all()


def test_a_rerun_redoes_nothing_and_a_margin_change_redoes_faces_only(clips, tmp_path):
    run_both(clips, tmp_path)
    before = {p: (tmp_path / "frames" / p).stat().st_mtime_ns for p in files_under(tmp_path / "frames")}
    frames, faces = run_both(clips, tmp_path)
    assert (frames.redone, frames.reused, faces.redone, faces.reused) == (0, 5, 0, 5)

    wider = FaceParams(crop_size=112, margin=0.6)
    frames, faces = run_both(clips, tmp_path, params=wider)
    assert frames.redone == 0 and faces.redone == 5
    assert {p: (tmp_path / "frames" / p).stat().st_mtime_ns for p in files_under(tmp_path / "frames")} == before


def test_adding_and_removing_videos(clips, tmp_path):
    first = clips.iloc[:3]
    run_both(first, tmp_path)
    frames, faces = run_both(clips, tmp_path)
    assert frames.redone == 2 and faces.redone == 2 and faces.reused == 3

    gone = clips.iloc[0]["video_id"]
    frames, faces = run_both(clips.iloc[1:], tmp_path)
    assert frames.removed == 1 and faces.removed == 1 and faces.redone == 0
    assert not (tmp_path / "frames" / gone).exists()
    assert not any(gone in p for p in files_under(tmp_path / "faces"))
    assert gone not in set(faces.table["video_id"])


def test_a_bad_video_is_reported_and_the_others_are_processed(clips, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_text("this is not a video")
    bad_row = clips.iloc[[0]].assign(video_id="broken-00000000", path=str(broken), sha256="0" * 64)
    videos = pd.concat([clips, bad_row], ignore_index=True)
    frames, faces = run_both(videos, tmp_path / "work")
    frames_report = frames.report.set_index("video_id")
    assert frames_report.loc["broken-00000000", "status"] == "error"
    assert "cannot open" in frames_report.loc["broken-00000000", "reason"]
    faces_report = faces.report.set_index("video_id")
    assert faces_report.loc["broken-00000000", "status"] == "error"
    assert (faces_report.drop("broken-00000000")["status"] != "error").all()


def test_two_workers_give_the_same_faces_as_one(clips, tmp_path):
    _, serial = run_both(clips, tmp_path / "one")
    _, parallel = run_both(clips, tmp_path / "two", pool=PoolSettings(workers=2, retry_delay_s=0))
    columns = ["video_id", "frame_index", "face", "track", "x1", "y1", "x2", "y2", "crop"]
    key = ["video_id", "frame_index", "face"]
    pd.testing.assert_frame_equal(
        serial.table[columns].sort_values(key).reset_index(drop=True),
        parallel.table[columns].sort_values(key).reset_index(drop=True),
    )


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_kill_9_during_the_faces_stage_then_rerun_resumes(clips, tmp_path):
    """Kill the faces stage once some videos are done; nothing half-written stays, and the rerun finishes."""
    work = tmp_path / "work"
    update_frames(clips, work / "frames", SAMPLING, INLINE)
    clips.to_csv(tmp_path / "videos.csv", index=False)
    script = textwrap.dedent(f"""
        import pandas as pd
        from deepfake.video.extraction import update_faces
        from deepfake.config import FaceParams
        from deepfake.config import FrameSampling
        from deepfake.config import PoolSettings
        update_faces(pd.read_csv({str(tmp_path / "videos.csv")!r}), {str(work / "frames")!r}, {str(work / "faces")!r},
                     FaceParams(crop_size=112), PoolSettings(workers=1, retry_delay_s=0))
    """)
    process = subprocess.Popen([sys.executable, "-c", script], cwd=PROJECT_ROOT)
    parts = work / "faces" / "parts"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and len(list(parts.glob("*.json"))) < 2 and process.poll() is None:
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    done_before = {p.stem for p in parts.glob("*.json")}
    assert 0 < len(done_before) < len(clips), "the kill should land part way through"

    # Every record on disk has all its crops; crops without a record may exist and are cleaned up by the rerun.
    for part in parts.glob("*.json"):
        for face in json.loads(part.read_text())["faces"]:
            assert (work / "faces" / face["crop"]).is_file()

    result = update_faces(clips, work / "frames", work / "faces", FaceParams(crop_size=112), INLINE)
    assert result.reused == len(done_before) and result.redone == len(clips) - len(done_before)
    leftovers = [p for p in files_under(work / "faces") if Path(p).name.startswith(".")]
    assert leftovers == []
    crops = {p for p in files_under(work / "faces") if p.startswith(("real/", "fake/"))}
    assert crops == set(result.table["crop"])


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_faces_on_a_two_worker_dask_cluster_match_a_serial_run(tmp_path):
    from deepfake.config import FaceParams, FrameSampling, PoolSettings, SampleSpec
    from deepfake.data.dataset import build_dataset
    from deepfake.data.sample import make_sample
    from deepfake.video.extraction import update_faces, update_frames

    make_sample(
        tmp_path / "clips", spec=SampleSpec(clips_per_face=1, fakes_per_real=1, frames=8, width=320, height=240)
    )
    videos = build_dataset(tmp_path / "clips").videos
    serial = PoolSettings(workers=1)
    update_frames(videos, tmp_path / "frames", FrameSampling(per_video=3), serial)
    params = FaceParams(crop_size=64)
    expected = update_faces(videos, tmp_path / "frames", tmp_path / "serial", params, serial)
    on_dask = update_faces(
        videos, tmp_path / "frames", tmp_path / "dask", params, PoolSettings(workers=2, dask="local")
    )
    assert len(expected.table) > 0 and on_dask.redone == len(videos)
    pd.testing.assert_frame_equal(on_dask.table, expected.table)
    pd.testing.assert_frame_equal(on_dask.report, expected.report)
    for crop in expected.table["crop"]:
        assert (tmp_path / "dask" / crop).read_bytes() == (tmp_path / "serial" / crop).read_bytes()


def test_a_cache_version_bump_redoes_every_video(clips, tmp_path, monkeypatch):
    import deepfake.video.extraction as extraction

    run_both(clips, tmp_path)
    monkeypatch.setattr(extraction, "FACES_VERSION", extraction.FACES_VERSION + 1)
    frames, faces = run_both(clips, tmp_path)
    assert (frames.redone, faces.redone) == (0, len(clips))  # new crops, same frames
    monkeypatch.setattr(extraction, "FRAMES_VERSION", extraction.FRAMES_VERSION + 1)
    frames, faces = run_both(clips, tmp_path)
    assert (frames.redone, faces.redone) == (len(clips), len(clips))  # new frames mean new crops


def test_a_comment_or_formatting_change_in_the_code_redoes_nothing(clips, tmp_path):
    """Keys carry explicit versions, not a hash of the source: the same code, re-commented, reuses every output."""
    import shutil

    run_both(clips, tmp_path)
    copy = tmp_path / "edited"
    shutil.copytree(PROJECT_ROOT / "deepfake", copy / "deepfake", ignore=shutil.ignore_patterns("__pycache__"))
    for module in ("video/extraction.py", "video/frames.py", "video/face_detection.py", "images.py"):
        path = copy / "deepfake" / module
        path.write_text("# an edit that changes no output\n" + path.read_text().replace("    ", "    ", 1) + "\n\n")
    clips.to_csv(tmp_path / "videos.csv", index=False)
    script = textwrap.dedent(f"""
        import pandas as pd, deepfake
        from deepfake.config import FaceParams, PoolSettings
        from deepfake.video.extraction import update_faces, update_frames
        from tests.test_extract import SAMPLING
        assert deepfake.__file__.startswith({str(copy)!r}), deepfake.__file__
        videos = pd.read_csv({str(tmp_path / "videos.csv")!r})
        pool = PoolSettings(workers=1)
        frames = update_frames(videos, {str(tmp_path / "frames")!r}, SAMPLING, pool)
        faces = update_faces(videos, {str(tmp_path / "frames")!r}, {str(tmp_path / "faces")!r}, FaceParams(crop_size=112), pool)
        print(frames.redone, frames.reused, faces.redone, faces.reused)
    """)
    env = {**os.environ, "PYTHONPATH": f"{copy}{os.pathsep}{PROJECT_ROOT}"}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0", str(len(clips)), "0", str(len(clips))]
