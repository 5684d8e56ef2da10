"""MLflow for real (SQLite in a temp dir, and a real `mlflow server`): log, register, gate, load, predict."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import torch

from deepfake.config import SampleSpec
from deepfake.data.sample import make_sample
from tests.conftest import CONFIG, PROJECT_ROOT, free_port, make_clip, random_weights, register_version


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A fresh SQLite tracking store, a small random-init model's weights, and clips to score."""
    root = tmp_path_factory.mktemp("registry")
    weights = random_weights(root / "model.pt")
    make_sample(root / "clips", spec=SampleSpec(clips_per_face=1, fakes_per_real=1, frames=8, width=320, height=240))
    (root / "notes.mp4").write_text("this is text, not a video")
    whole = next((root / "clips").glob("*.mp4")).read_bytes()
    (root / "truncated.mp4").write_bytes(whole[: len(whole) // 2])
    make_clip(root / "noise" / "noise.mp4", frames=8, size=(160, 120))
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
    yield root, weights
    os.environ.pop("MLFLOW_TRACKING_URI", None)


def ensure_champion(store) -> None:
    from deepfake.errors import RegistryError
    from deepfake.tracking import connect, model_versions

    connect(store[0])
    try:
        if model_versions("deepfake-detector")["aliases"].str.contains("champion").any():
            return
    except RegistryError:
        pass
    register_version(store[1], 0.8)


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "deepfake.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=PROJECT_ROOT,
        timeout=600,
    )


@pytest.mark.slow
def test_gate_moves_the_champion_only_for_a_better_version(store):
    from deepfake.tracking import model_versions, promote

    root, weights = store
    first = register_version(weights, 0.80)
    assert (first.alias, first.reason) == ("champion", "no champion yet")
    worse = register_version(weights, 0.75)
    assert worse.alias == "challenger" and worse.champion_version == first.version and worse.champion_value == 0.80
    better = register_version(weights, 0.90)
    assert better.alias == "champion" and "beats" in better.reason
    table = model_versions("deepfake-detector").set_index("version")
    assert table.loc[int(better.version), "aliases"] == "champion"
    assert table.loc[int(worse.version), "aliases"] == "challenger"
    assert table.loc[int(first.version), "aliases"] == ""
    assert promote(first.version, "deepfake-detector") == better.version  # rollback by hand
    assert model_versions("deepfake-detector").set_index("version").loc[int(first.version), "aliases"] == "champion"
    promote(better.version, "deepfake-detector")


@pytest.mark.slow
def test_predict_by_alias_on_generated_clips(store):
    root, _ = store
    ensure_champion(store)
    result = cli(
        "predict",
        str(root / "clips"),
        str(root / "noise"),
        str(root / "notes.mp4"),
        str(root / "missing.mp4"),
        str(root / "truncated.mp4"),
    )
    assert result.returncode == 1, result.stderr  # some rows are errors
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    by_name = {Path(row["video"]).name: row for row in rows}
    clips = [row for row in rows if row["video"].endswith(".mp4") and "/clips/" in row["video"]]
    assert len(clips) == 4  # two bundled faces, a real and a fake clip of each
    for row in clips:
        assert row["verdict"] in ("REAL", "FAKE") and 0 <= row["p_fake"] <= 1
        assert row["frames"] == 4 and row["faces"] >= 4 and row["tracks"] and row["model_version"]
        assert row["model"] == "models:/deepfake-detector@champion"
    assert by_name["noise.mp4"]["verdict"] == "NO_FACE" and by_name["noise.mp4"]["p_fake"] is None
    assert by_name["notes.mp4"]["verdict"] == "ERROR" and "not a readable video" in by_name["notes.mp4"]["reason"]
    assert by_name["missing.mp4"]["verdict"] == "ERROR" and "no such file" in by_name["missing.mp4"]["reason"]
    assert by_name["truncated.mp4"]["verdict"] == "ERROR" and by_name["truncated.mp4"]["reason"].startswith(
        "truncated.mp4: "
    )
    assert "Traceback" not in result.stderr and "loaded in" in result.stderr


@pytest.mark.slow
def test_the_local_registry_loads_without_mlflow_or_torch_and_scores_as_mlflow_does(store):
    import mlflow.pyfunc
    import pandas as pd

    root, _ = store
    ensure_champion(store)
    clip = str(next((root / "clips").glob("*.mp4")))
    # `deepfake predict CLIP` as a user runs it, then which heavy modules it imported.
    code = (
        "import json, runpy, sys\n"
        "sys.argv = ['deepfake', 'predict', sys.argv[1]]\n"
        "try:\n    runpy.run_module('deepfake.cli', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "print(json.dumps({'mlflow': 'mlflow' in sys.modules, 'torch': 'torch' in sys.modules}))"
    )
    runs = [
        subprocess.run(
            [sys.executable, "-c", code, clip], capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=600
        )
        for _ in range(2)  # the first may export the networks to ONNX (with torch) into the cache
    ]
    assert runs[1].returncode == 0, runs[1].stderr
    row, imported = map(json.loads, runs[1].stdout.splitlines()[-2:])
    assert imported == {"mlflow": False, "torch": False}
    fast = row
    through_mlflow = mlflow.pyfunc.load_model("models:/deepfake-detector@champion").predict(
        pd.DataFrame({"video": [clip]})
    )
    assert through_mlflow["faces"][0] == fast["faces"] > 0
    assert abs(through_mlflow["p_fake"][0] - fast["p_fake"]) < 1e-6


@pytest.mark.slow
def test_predict_csv_and_exit_zero_when_all_scored(store):
    root, _ = store
    ensure_champion(store)
    result = cli("predict", str(root / "noise"), "--format", "csv")
    assert result.returncode == 0, result.stderr
    header, row = result.stdout.splitlines()[:2]
    assert header.startswith("video,verdict,p_fake") and ",NO_FACE," in row


def test_directory_with_no_videos_is_an_error_row(tmp_path):
    from deepfake.cli import _video_paths

    (tmp_path / "empty").mkdir()
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "readme.txt").write_text("x")
    found = _video_paths([tmp_path / "empty", tmp_path / "docs", tmp_path / "nope.mp4"])
    assert [reason.split(": ")[1] for _, reason in found] == ["folder holds no video files"] * 2 + [
        "no such file or folder"
    ]


@pytest.mark.slow
def test_unknown_model_name_or_alias_lists_what_exists(store):
    ensure_champion(store)
    result = cli("predict", str(store[0] / "noise"), "--model", "models:/no-such-model@champion")
    assert result.returncode == 2
    assert "no registered model 'no-such-model'" in result.stderr and "deepfake-detector" in result.stderr
    result = cli("predict", str(store[0] / "noise"), "--model", "models:/deepfake-detector@staging")
    assert result.returncode == 2 and "no alias 'staging'" in result.stderr and "@champion" in result.stderr
    result = cli("promote", "999")
    assert result.returncode == 2 and "no version 999" in result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_registry_is_one_clear_line():
    uri = f"http://127.0.0.1:{free_port()}"
    for args in (["predict", "x.mp4"], ["models"]):
        result = cli(*args, env={"MLFLOW_TRACKING_URI": uri})
        assert result.returncode == 2
        assert uri in result.stderr and "not reachable" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_a_checkpoint_that_is_not_a_state_dict_is_refused(store, tmp_path):
    import mlflow

    from deepfake.errors import RegistryError
    from deepfake.serving.loading import load_detector_model
    from deepfake.tracking import connect, log_detector

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    evil = tmp_path / "evil.pt"
    torch.save({"weights": Payload()}, evil)
    connect(store[0])
    with mlflow.start_run():
        info = log_detector(evil, CONFIG.to_dict(), "# card\n")
    version = mlflow.register_model(info.model_uri, "evil-detector").version
    with pytest.raises(RegistryError, match="not a plain state_dict"):
        load_detector_model(f"models:/evil-detector/{version}")
    assert not (tmp_path / "pwned").exists()


@pytest.fixture
def mlflow_server(tmp_path):
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'server.db'}",
            "--artifacts-destination",
            str(tmp_path / "artifacts"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        for _ in range(120):
            try:
                if requests.get(f"{uri}/health", timeout=1).ok:
                    break
            except requests.RequestException:
                time.sleep(0.5)
        else:
            pytest.fail("mlflow server did not start")
        yield uri
    finally:
        os.killpg(process.pid, 15)
        process.wait(timeout=30)


@pytest.mark.slow
def test_against_a_real_tracking_server(store, mlflow_server, monkeypatch):
    root, weights = store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    decision = register_version(weights, 0.7)
    assert decision.alias == "champion"
    result = cli("predict", str(root / "clips"), env={"MLFLOW_TRACKING_URI": mlflow_server})
    assert result.returncode == 0, result.stderr
    assert all(json.loads(line)["verdict"] in ("REAL", "FAKE") for line in result.stdout.splitlines())
    assert "champion" in cli("models", env={"MLFLOW_TRACKING_URI": mlflow_server}).stdout


@pytest.mark.slow
def test_mlflow_models_serve_answers_a_list_of_video_paths(store):
    root, weights = store
    ensure_champion(store)
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "models",
            "serve",
            "-m",
            "models:/deepfake-detector@champion",
            "--env-manager",
            "local",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        # MLflow execs `uvicorn` from PATH: the one installed beside this interpreter.
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"},
    )
    try:
        clip = next((root / "clips").glob("*.mp4"))
        for _ in range(240):
            try:
                response = requests.post(
                    f"http://127.0.0.1:{port}/invocations",
                    timeout=120,
                    json={"dataframe_records": [{"video": str(clip)}, {"video": str(root / "notes.mp4")}]},
                )
                break
            except requests.ConnectionError:
                time.sleep(0.5)
        else:
            pytest.fail("mlflow models serve did not start")
        assert response.status_code == 200, response.text
        rows = response.json()["predictions"]
        assert rows[0]["verdict"] in ("REAL", "FAKE") and rows[1]["verdict"] == "ERROR"
    finally:
        os.killpg(process.pid, 15)
        process.wait(timeout=30)
