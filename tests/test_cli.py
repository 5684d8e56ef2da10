"""The `deepfake` command: help everywhere, clear errors, and the ingest command's tables."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from deepfake.cli import app

runner = CliRunner()


def test_console_script_lists_its_commands():
    result = subprocess.run([str(Path(sys.executable).with_name("deepfake")), "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    assert "make-sample" in result.stdout and "ingest" in result.stdout


@pytest.mark.parametrize("command", sorted(c.name or c.callback.__name__ for c in app.registered_commands))
def test_every_subcommand_has_help(command):
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_ingest_writes_both_tables_and_lists_rejects(tmp_path, clip_factory):
    clip_factory("real.mp4")
    clip_factory("fake.mp4")
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "metadata.json").write_text(
        json.dumps(
            {
                "real.mp4": {"label": "REAL"},
                "fake.mp4": {"label": "FAKE", "original": "real.mp4"},
                "empty.mp4": {"label": "FAKE"},
            }
        )
    )
    out = tmp_path / "tables"
    result = runner.invoke(app, ["ingest", str(tmp_path), "--out-dir", str(out)])
    assert result.exit_code == 0, result.output
    assert "accepted 2 videos, rejected 1" in result.output
    assert "rejected empty.mp4: empty file" in result.output
    videos = pd.read_csv(out / "videos.csv")
    assert sorted(videos["relpath"]) == ["fake.mp4", "real.mp4"]
    assert videos["group"].nunique() == 1
    assert pd.read_csv(out / "rejects.csv")["path"].tolist() == ["empty.mp4"]


def test_ingest_on_unreadable_metadata_is_a_one_line_error(tmp_path, clip_factory):
    clip_factory("a.mp4")
    (tmp_path / "metadata.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    result = runner.invoke(app, ["ingest", str(tmp_path), "--out-dir", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert f"error: {tmp_path / 'metadata.csv'}, line 1: not a text file (byte 0" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_ingest_on_a_missing_folder_says_so(tmp_path):
    result = runner.invoke(app, ["ingest", str(tmp_path / "nowhere")])
    assert result.exit_code == 2
    assert "dataset root is not a folder" in result.output


def test_make_sample_with_a_missing_faces_folder_says_so(tmp_path):
    result = runner.invoke(app, ["make-sample", str(tmp_path / "out"), "--faces", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert "face photo folder not found" in result.output


def test_summary_reports_tables_and_problem_videos(tmp_path):
    interim, faces = tmp_path / "data/interim", tmp_path / "data/faces"
    interim.mkdir(parents=True)
    faces.mkdir(parents=True)
    pd.DataFrame(
        {"video_id": ["a", "b", "c"], "split": ["train", "train", "test"], "label": ["REAL", "FAKE", "FAKE"]}
    ).to_csv(interim / "videos.csv", index=False)
    pd.DataFrame({"path": ["x.mp4"], "reason": ["empty file (0 bytes)"]}).to_csv(interim / "rejects.csv", index=False)
    pd.DataFrame(
        {
            "video_id": ["a", "b", "c"],
            "status": ["ok", "ok", "no_face"],
            "faces": [5, 7, 0],
            "reason": ["", "", "no face passed the thresholds in 4 sampled frames"],
        }
    ).to_csv(faces / "report.csv", index=False)
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports/train.json").write_text(
        json.dumps(
            {
                "backbone": "efficientnet_lite0",
                "weights_used": "imagenet",
                "best_epoch": 3,
                "epochs_run": 5,
                "val_loss": 0.25,
                "val_auc": 0.9712,
            }
        )
    )
    result = runner.invoke(app, ["summary", "--project", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (
        "model: efficientnet_lite0 (imagenet weights), best epoch 3 of 5, val loss 0.250, val AUC 0.971"
        in result.output
    )
    assert "3 videos accepted, 1 rejected" in result.output
    assert "12 face crops from 2 videos" in result.output
    assert "no_face c: no face passed the thresholds" in result.output


def test_summary_before_any_run_says_what_to_do(tmp_path):
    result = runner.invoke(app, ["summary", "--project", str(tmp_path)])
    assert result.exit_code == 2 and "run `dvc repro` first" in result.output
