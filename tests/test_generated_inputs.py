"""Generated and damaged videos (hypothesis) through every place a video is processed or scored: the dataset
step, the frames and faces stages, `VideoDetector`, `deepfake predict` and `POST /v1/predict`.

The properties: no unhandled exception, every input exactly once in the outputs (accepted or rejected, one
report row per video, one result row per file), nothing half-written. Example counts are bounded for CI
(`DEEPFAKE_FUZZ_SCALE=20` runs twenty times as many).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from deepfake.config import FaceParams, FrameSampling, PoolSettings, SampleSpec
from deepfake.data.dataset import build_dataset
from deepfake.data.sample import make_sample
from deepfake.model.classifier import load_classifier
from deepfake.serving.video_detector import VERDICTS, VideoDetector
from deepfake.video.extraction import update_faces, update_frames
from deepfake.video.face_detection import load_face_detector
from tests.conftest import CONFIG, examples, random_weights
from tests.generated import describe, videos, write_recipe

counter = itertools.count()


@pytest.fixture(scope="module")
def face_clip(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("face-clip")
    make_sample(root, SampleSpec(clips_per_face=1, fakes_per_real=0, frames=8, width=320, height=240))
    return sorted(root.glob("*.mp4"))[0]


@pytest.fixture(scope="module")
def detector(tmp_path_factory) -> VideoDetector:
    weights = random_weights(tmp_path_factory.mktemp("weights") / "model.pt")
    return VideoDetector(load_classifier(weights, CONFIG.backbone), CONFIG, load_face_detector())


def leftovers(folder: Path) -> list[str]:
    """Files the atomic writers leave only when interrupted: there must be none after a run."""
    return [p.name for p in folder.rglob("*") if p.name.startswith(".") and p.name.endswith((".tmp", ".old"))]


@examples(12)
@given(recipes=st.lists(videos, min_size=1, max_size=4))
def test_the_dataset_frames_and_faces_stages_account_for_every_generated_file(recipes, face_clip, ffmpeg, tmp_path):
    work = tmp_path / f"example{next(counter)}"
    files = [
        write_recipe(recipe, work / "data" / ("real", "fake")[number % 2] / f"v{number}", face_clip, ffmpeg)
        for number, recipe in enumerate(recipes)
    ]
    dataset = build_dataset(work / "data")
    named = sorted(Path(p).name for p in [*dataset.videos["relpath"], *dataset.rejects["path"]])
    assert named == sorted(f.name for f in files), [describe(r) for r in recipes]
    assert all(dataset.rejects["reason"].str.len() > 0)

    pool = PoolSettings(workers=1, retries=0, retry_delay_s=0)
    frames = update_frames(dataset.videos, work / "frames", FrameSampling(per_video=4), pool)
    faces = update_faces(dataset.videos, work / "frames", work / "faces", FaceParams(crop_size=64), pool)
    for report in (frames.report, faces.report):
        assert sorted(report["video_id"]) == sorted(dataset.videos["video_id"])
        assert set(report["status"]) <= {"ok", "partial", "no_face", "error"}
        assert all(report.loc[report["status"] == "error", "reason"].str.len() > 0)
    assert leftovers(work) == []


@examples(25)
@given(recipe=videos)
def test_the_video_detector_answers_every_generated_file_with_a_row(recipe, face_clip, ffmpeg, detector, tmp_path):
    path = write_recipe(recipe, tmp_path / f"example{next(counter)}" / "clip", face_clip, ffmpeg)
    row = detector.predict(path)
    assert row["verdict"] in VERDICTS, describe(recipe)
    if row["verdict"] == "ERROR":
        assert row["reason"], describe(recipe)
    assert not row["reason"].startswith("unexpected"), (describe(recipe), row["reason"])


def test_a_video_too_thin_for_mtcnn_is_no_face_not_a_crash(face_clip, ffmpeg, detector, tmp_path):
    """The case that used to end a whole `deepfake predict` batch: MTCNN's empty image pyramid."""
    for size in [(2000, 16), (16, 2000), (1, 1), (11, 11)]:
        recipe = {
            "kind": "written",
            "codec": ("mp4v", ".mp4"),
            "size": size,
            "frames": 3,
            "fps": 10.0,
            "pattern": "noise",
            "seed": 0,
        }
        row = detector.predict(write_recipe(recipe, tmp_path / f"thin{size}" / "clip", face_clip, ffmpeg))
        assert row["verdict"] in ("NO_FACE", "ERROR") and not row["reason"].startswith("unexpected"), row


def test_an_unforeseen_failure_is_that_videos_error_row_naming_the_exception(face_clip, detector, monkeypatch):
    import deepfake.serving.video_detector as module

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(module, "link_tracks", broken)
    row = detector.predict(face_clip)
    assert row["verdict"] == "ERROR" and row["reason"] == "unexpected error while scoring: RuntimeError: boom"


@pytest.mark.slow
def test_deepfake_predict_writes_a_row_per_file_as_it_goes_and_the_exit_code(face_clip, ffmpeg, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from deepfake.cli import app
    from tests.conftest import register_version

    register_version(random_weights(tmp_path / "model.pt"), 0.8)
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "batch"
    thin = {
        "kind": "written",
        "codec": ("mp4v", ".mp4"),
        "size": (2000, 16),
        "frames": 3,
        "fps": 10.0,
        "pattern": "noise",
        "seed": 0,
    }
    cut = {"kind": "damaged", "damage": "truncate", "at": 0.3, "length": 1, "seed": 0}
    files = [
        write_recipe(thin, folder / "a-thin", face_clip, ffmpeg),
        write_recipe(cut, folder / "b-cut", face_clip, ffmpeg),
    ]
    (folder / "c-good.mp4").write_bytes(face_clip.read_bytes())
    files.append(folder / "c-good.mp4")
    result = CliRunner().invoke(app, ["predict", str(folder)])
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [Path(r["video"]).name for r in rows] == [f.name for f in files]
    assert [r["verdict"] for r in rows][2] in ("REAL", "FAKE")
    assert result.exit_code == (1 if any(r["verdict"] == "ERROR" for r in rows) else 0)
    csv = CliRunner().invoke(app, ["predict", str(folder), "--format", "csv"])
    assert csv.stdout.count("\n") == len(files) + 1 and csv.stdout.startswith("video,verdict")


@pytest.mark.slow
@examples(12)
@given(recipe=videos)
def test_the_api_answers_every_generated_upload_without_a_500(recipe, face_clip, ffmpeg, served, tmp_path):
    import requests

    path = write_recipe(recipe, tmp_path / f"upload{next(counter)}" / "clip", face_clip, ffmpeg)
    with open(path, "rb") as handle:
        response = requests.post(f"{served.url}/v1/predict", files={"file": (path.name, handle)}, timeout=120)
    assert response.status_code in (200, 413, 422), (describe(recipe), response.status_code, response.text)
    if response.status_code == 200:
        assert response.json()["verdict"] in ("REAL", "FAKE", "NO_FACE")
    else:
        assert response.json()["detail"]
    assert requests.get(f"{served.url}/v1/health", timeout=5).json()["status"] == "ok"


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_schemathesis_finds_no_server_error_in_the_api(served, tmp_path):
    """schemathesis generates requests from /openapi.json (bounded count, fixed seed): no 500, no hang."""
    import shutil
    import subprocess
    import sys

    st_command = shutil.which("st", path=str(Path(sys.executable).parent))
    assert st_command, "schemathesis (a dev dependency) is not installed"
    result = subprocess.run(
        [
            st_command,
            "run",
            f"{served.url}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "25",
            "--seed",
            "1",
            "--request-timeout",
            "120",
            "--max-response-time",
            "120",
            "--no-color",
            "--report",
            "junit",
            "--report-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=540,
        cwd=tmp_path,  # schemathesis keeps a cache folder in its working directory
    )
    print(result.stdout[-2500:])  # the run's summary (pytest -rP shows it)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "passed" in result.stdout.lower()


def test_a_clip_cut_short_is_sampled_over_the_part_that_decodes(detector, clip_factory, ffmpeg, tmp_path):
    # predict trusts the header's frame count until decoding stops short; then, as the frames stage does, it
    # spreads the samples over the frames that decode instead of losing the ones past the cut.
    import subprocess

    from deepfake.video.frames import FrameReadReport, read_frames, sample_frame_indices
    from deepfake.video.probe import probe_video

    source = clip_factory("source.mp4", frames=40, size=(160, 120))
    full = tmp_path / "full.mp4"
    subprocess.run(
        [ffmpeg, "-v", "error", "-y", "-i", source, "-c:v", "libx264", "-g", "10", "-movflags", "+faststart", full],
        check=True,
        timeout=60,
    )
    cut = tmp_path / "cut.mp4"
    data = full.read_bytes()
    cut.write_bytes(data[: int(len(data) * 0.95)])
    info = probe_video(cut)
    assert info.header_frames == 40 and info.frames < 40, "the cut should lose a few frames at the end"

    sampling = dataclasses.replace(CONFIG.sampling, per_video=16)
    expected = FrameReadReport()
    list(read_frames(cut, sample_frame_indices(info.frames, info.fps, sampling), report=expected))
    header_only = FrameReadReport()
    list(read_frames(cut, sample_frame_indices(40, info.fps, sampling), report=header_only))
    assert header_only.read < expected.read

    cut_detector = VideoDetector(detector.model, dataclasses.replace(CONFIG, sampling=sampling), detector.face_detector)
    row = cut_detector.predict(cut)
    assert row["frames"] == expected.read
