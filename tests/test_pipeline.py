"""`dvc repro` on a copy of the project: the real DVC pipeline, its cache, and its error messages."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import PROJECT_ROOT, make_clip

pytestmark = pytest.mark.slow
PROJECT_FILES = [
    "dvc.yaml",
    "params.yaml",
    "pyproject.toml",
    "prefect.yaml",
    ".dvcignore",
    ".dvc/config",
    ".dvc/.gitignore",
]
PROJECT_DIRS = ["deepfake", "stages", "flows"]


def run(args, cwd, check=True):
    # DVC runs each stage's `python -m stages.X` through PATH: this environment's interpreter must come first.
    # The project's own registry (its mlflow.db), whatever tracking URI this process was pointed at.
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture
def project(tmp_path):
    """A git + DVC checkout of the project with a small sample, so `dvc repro` runs in seconds."""
    root = tmp_path / "project"
    for name in PROJECT_FILES:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(PROJECT_ROOT / name, root / name)
    for name in PROJECT_DIRS:
        shutil.copytree(PROJECT_ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["sample"].update(clips_per_face=2, frames=8, width=320, height=240)
    params["frames"]["per_video"] = 3
    params["workers"]["workers"] = 1
    params["model"].update(backbone="resnet18", weights="none", input_size=64)
    params["train"].update(epochs=2, batch_size=8, loader_workers=0)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    run(["git", "init", "-q"], root)
    # As `make demo` does: the sample clips are made outside the pipeline, from params.yaml's sample section.
    run([sys.executable, "-m", "deepfake.cli", "make-sample"], root)
    return root


def dvc(project, *args, check=True):
    return run([str(Path(sys.executable).with_name("dvc")), *args], project, check=check)


def test_dvc_repro_builds_the_pipeline_and_a_second_run_does_nothing(project):
    first = dvc(project, "repro")
    for stage in ("dataset", "frames", "faces", "train", "evaluate", "register"):
        assert f"Running stage '{stage}'" in first.stdout
    videos = pd.read_csv(project / "data/interim/videos.csv")
    rejects = pd.read_csv(project / "data/interim/rejects.csv")
    assert len(videos) == 8 and rejects.empty
    assert set(videos["split"]) == {"train", "val", "test"}
    for _, group in videos.groupby("group"):
        assert group["split"].nunique() == 1
    assert (project / "dvc.lock").is_file()
    faces = pd.read_csv(project / "data/faces/faces.csv")
    assert set(faces["video_id"]) == set(videos["video_id"]) and len(faces) == 3 * 8
    assert all((project / "data/faces" / crop).is_file() for crop in faces["crop"])
    history = pd.read_csv(project / "reports/history.csv")
    assert list(history["epoch"]) == [1, 2]
    assert (project / "models/model.pt").is_file() and not (project / "models/checkpoint.pt").exists()
    metrics = dvc(project, "metrics", "show").stdout
    assert "reports/train.json" in metrics and "best_epoch" in metrics and "val_auc" in metrics
    assert json.loads((project / "reports/train.json").read_text())["weights_used"] == "none"

    # Evaluation: DVC reads its metrics and plots; the figures are there for people.
    assert "reports/metrics.json" in metrics and "video.auc" in metrics
    evaluation = json.loads((project / "reports/metrics.json").read_text())
    assert evaluation["video"]["count"] >= 1 and evaluation["face"]["count"] >= evaluation["video"]["count"]
    assert set(evaluation["strategies"]) == {"mean", "confident", "max_track"}
    assert set(evaluation["robustness"]) == {"clean", "jpeg50", "downscale0.5", "sharpen1.5"}
    assert evaluation["calibration"]["temperature"] > 0
    plots = dvc(project, "plots", "show", "--json").stdout
    for plot in ("loss", "accuracy", "roc", "confusion"):
        assert f'"{plot}"' in plots
    for figure in ("roc", "confusion", "reliability", "history"):
        assert (project / f"reports/figures/{figure}.png").stat().st_size > 1000

    # Registration: the first version becomes champion, and predict loads it by alias.
    promotion = json.loads((project / "reports/promotion.json").read_text())
    assert promotion["version"] == "1" and promotion["alias"] == "champion"
    clip = videos.loc[videos["split"] == "test", "path"].iloc[0]
    predicted = run([sys.executable, "-m", "deepfake.cli", "predict", clip], project)
    row = json.loads(predicted.stdout)
    assert row["verdict"] in ("REAL", "FAKE") and row["model_version"] == "1"

    again = dvc(project, "repro")
    assert "Data and pipelines are up to date" in again.stdout
    assert "Running stage" not in again.stdout

    # Code is a dependency by package: an inference-only change reruns register (the registered model
    # bundles the package) and nothing else; a training change reruns train and what follows it.
    with open(project / "deepfake/serving/upload.py", "a") as handle:
        handle.write("\n# an inference-only change\n")
    assert changed_stages(project) == {"register"}
    with open(project / "deepfake/model/augment.py", "a") as handle:
        handle.write("\n# a training change\n")
    assert changed_stages(project) == {"train", "evaluate", "register"}


def changed_stages(project) -> set[str]:
    """Stages `dvc status` finds out of date (a dependency changed), without running anything."""
    status = json.loads(dvc(project, "status", "--json").stdout or "{}")
    return {key.split(":")[-1] for key in status}


def test_param_changes_rerun_only_the_stages_that_read_them(project):
    # Up to faces only: the stages downstream read the same keys the first test already covers end to end.
    dvc(project, "repro", "faces")
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["faces"]["margin"] = 0.5
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    rerun = dvc(project, "repro", "faces")
    for stage in ("dataset", "frames"):
        assert f"Stage '{stage}' didn't change, skipping" in rerun.stdout
    assert "Running stage 'faces'" in rerun.stdout
    assert "faces: 24 crops from 8 videos (8 processed, 0 unchanged, 0 removed)" in rerun.stdout

    params["dataset"]["split"]["seed"] = 7
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    rerun = dvc(project, "repro", "faces")
    assert "Running stage 'dataset'" in rerun.stdout
    # A new split changes the videos table, not any video's content: no video is decoded or detected again.
    assert "(0 decoded, 8 unchanged, 0 removed)" in rerun.stdout
    assert "(0 processed, 8 unchanged, 0 removed)" in rerun.stdout
    faces = pd.read_csv(project / "data/faces/faces.csv")
    videos = pd.read_csv(project / "data/interim/videos.csv")
    assert (
        faces.merge(videos[["video_id", "split"]], on="video_id", suffixes=("", "_now"))
        .eval("split == split_now")
        .all()
    )


def test_unreadable_metadata_stops_the_stage_with_file_and_line_and_no_traceback(project):
    incoming = project / "incoming"
    make_clip(incoming / "a.mp4")
    (incoming / "metadata.json").write_text('{\n  "a.mp4": {"label": "REAL",\n  oops\n}\n')
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["dataset"]["sources"] = {"incoming": {"root": "incoming"}}
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    shutil.rmtree(project / "data" / "sample")
    result = dvc(project, "repro", "dataset", check=False)
    assert not (project / "data" / "sample").exists()  # a pipeline on other data never makes the demo's clips
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "incoming/metadata.json, line 3" in output
    assert "Traceback" not in output
    assert not (project / "data/interim/videos.csv").exists()
