"""Prefect flows against a real local Prefect server: retrain, gpu limit, deployments, score-inbox, S3 remote."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import requests
import yaml

from tests.conftest import free_port, random_weights, register_version
from tests.test_pipeline import dvc, project  # noqa: F401  (the `project` fixture: a small copy of this project)

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def wait_for(url: str, seconds: float, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}")
        try:
            if requests.get(url, timeout=2).ok:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{url} did not answer within {seconds} s")


@pytest.fixture(scope="module")
def prefect_api(tmp_path_factory):
    """`prefect server start` on 127.0.0.1 with its own PREFECT_HOME; this process and its children use it."""
    from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings

    home = tmp_path_factory.mktemp("prefect-home")
    url = f"http://127.0.0.1:{free_port()}/api"
    env = os.environ | {"PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_API_URL": url}
    log = open(home / "server.log", "w")
    server = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", url.split(":")[2].split("/")[0]],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(f"{url}/health", 120, server)
        saved = {k: os.environ.get(k) for k in ("PREFECT_API_URL", "PREFECT_HOME")}
        os.environ.update(PREFECT_API_URL=url, PREFECT_HOME=str(home))
        with temporary_settings(updates={PREFECT_API_URL: url, PREFECT_HOME: str(home)}):
            yield url
        for key, value in saved.items():
            os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)
    finally:
        server.terminate()
        server.wait(30)
        log.close()


def dvc_project(root: Path, stages: dict) -> Path:
    """A git + DVC project holding just `stages`."""
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run([str(BIN / "dvc"), "init", "-q"], cwd=root, check=True)
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}))
    return root


FLAKY = "import os, sys; os.path.exists('tried') or (open('tried', 'w').close(), sys.exit('fetch: connection reset'))"


def test_retrain_retries_a_transient_failure_and_stops_on_a_stage_error(prefect_api, tmp_path):
    from flows.retrain import retrain

    root = dvc_project(
        tmp_path / "p",
        {
            "fetch": {"cmd": f'python -c "{FLAKY}" && echo data > a.txt', "outs": ["a.txt"]},
            "check": {
                "cmd": "python -c \"import sys; sys.exit('check: metadata.csv line 3: unknown label')\"",
                "deps": ["a.txt"],
                "outs": ["b.txt"],
            },
            "report": {"cmd": "echo never > c.txt", "deps": ["b.txt"], "outs": ["c.txt"]},
        },
    )
    state = retrain(project=str(root), retries=1, retry_delay_s=0, return_state=True)
    assert (root / "tried").exists() and (root / "a.txt").read_text() == "data\n"  # failed once, then retried
    assert state.is_failed()
    assert state.message == "stage check failed: check: metadata.csv line 3: unknown label"
    assert not (root / "c.txt").exists()  # nothing after the failed stage ran

    stages = yaml.safe_load((root / "dvc.yaml").read_text())
    stages["stages"]["check"]["cmd"] = "cp a.txt b.txt"
    (root / "dvc.yaml").write_text(yaml.safe_dump(stages))
    summary = retrain(project=str(root), retries=0)
    assert summary["ran"] == ["check", "report"] and summary["skipped"] == ["fetch"]
    assert summary["promotion"] is None and summary["pushed"] is False


def test_training_waits_for_the_gpu_limit(prefect_api, tmp_path):
    from prefect.concurrency.sync import concurrency

    from flows.retrain import GPU_LIMIT, ensure_concurrency_limit, retrain

    root = dvc_project(tmp_path / "p", {"train": {"cmd": "echo weights > model.txt", "outs": ["model.txt"]}})
    ensure_concurrency_limit(GPU_LIMIT)
    with concurrency(GPU_LIMIT, occupy=1, strict=True):  # another run holds the only slot
        state = retrain(project=str(root), gpu_timeout_s=3, return_state=True)
    assert state.is_failed() and "no `gpu` slot free within 3" in state.message
    assert not (root / "model.txt").exists()
    assert retrain(project=str(root), gpu_timeout_s=30)["ran"] == ["train"]  # slot released: it runs


def test_score_inbox_scores_new_videos_once_and_sorts_them(prefect_api, tmp_path, monkeypatch):
    from deepfake.config import SampleSpec
    from deepfake.data.sample import make_sample
    from flows.score_inbox import score_inbox

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    register_version(random_weights(tmp_path / "model.pt"), 0.8)
    make_sample(
        tmp_path / "clips", spec=SampleSpec(clips_per_face=1, fakes_per_real=0, frames=8, width=320, height=240)
    )
    good = sorted((tmp_path / "clips").glob("*.mp4"))[0]
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    shutil.copy(good, inbox / "good.mp4")
    (inbox / "bad.mp4").write_text("a text file, not a video")
    (inbox / ".uploading.mp4").write_bytes(b"partial")  # hidden: still being written, left alone

    first = score_inbox(inbox=str(inbox), project=str(tmp_path), retry_delay_s=0)
    assert first["scored"] == 1 and first["failed"] == 1 and first["already_scored"] == 0
    assert (inbox / "done/good.mp4").is_file() and (inbox / "failed/bad.mp4").is_file()
    assert (inbox / ".uploading.mp4").is_file()
    rows = {row["video"]: row for row in map(json.loads, (inbox / "results.jsonl").read_text().splitlines())}
    assert rows["good.mp4"]["verdict"] in ("REAL", "FAKE") and 0 <= rows["good.mp4"]["p_fake"] <= 1
    assert rows["bad.mp4"]["verdict"] == "ERROR" and "not a readable video" in rows["bad.mp4"]["reason"]
    assert rows["good.mp4"]["model_version"] == "1" and len(rows["good.mp4"]["sha256"]) == 64
    assert len(pd.read_csv(inbox / "results.csv")) == 2

    shutil.copy(good, inbox / "good-again.mp4")  # the same content under another name: not rescored
    second = score_inbox(inbox=str(inbox), project=str(tmp_path))
    assert second == {"scored": 0, "failed": 0, "already_scored": 1, "results": str(inbox / "results.jsonl")}
    assert (inbox / "done/good-again.mp4").is_file()
    assert len((inbox / "results.jsonl").read_text().splitlines()) == 2
    assert score_inbox(inbox=str(inbox), project=str(tmp_path))["already_scored"] == 0  # nothing left to do


def test_retrain_pushes_to_an_s3_remote_that_a_second_machine_pulls(prefect_api, tmp_path):
    """moto's S3 server on 127.0.0.1 stands in for S3-compatible storage; dvc-s3 talks to it for real."""
    import boto3

    from flows.retrain import retrain

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(f"{endpoint}/moto-api/", 60, server)
        credentials = {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        for key, value in credentials.items():
            os.environ[key] = value
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="pipeline")
        stages = {
            "make": {
                "cmd": "python -c \"open('model.bin', 'wb').write(bytes(range(256)) * 64)\"",
                "outs": ["model.bin"],
            }
        }
        first = dvc_project(tmp_path / "first", stages)
        dvc(first, "remote", "add", "-d", "storage", "s3://pipeline/dvc")
        dvc(first, "remote", "modify", "storage", "endpointurl", endpoint)
        summary = retrain(project=str(first), retries=0)
        assert summary["ran"] == ["make"] and summary["pushed"] and summary["remote"] == "storage"

        second = tmp_path / "second"  # what `git clone` gives another machine: the project files, no data
        shutil.copytree(first, second, ignore=shutil.ignore_patterns("model.bin", "cache", "tmp"))
        assert not (second / "model.bin").exists()
        dvc(second, "pull")
        assert (second / "model.bin").read_bytes() == (first / "model.bin").read_bytes()
        assert "up to date" in dvc(second, "status").stdout.lower()
    finally:
        server.terminate()
        server.wait(30)
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
            os.environ.pop(key, None)


@pytest.mark.timeout(900)
def test_deployments_with_schedules_and_a_triggered_retrain_on_the_demo_data(prefect_api, project, tmp_path):  # noqa: F811
    """`prefect deploy --all` from prefect.yaml, then a process worker runs a triggered nightly retrain."""
    remote = tmp_path / "remote"
    dvc(project, "remote", "add", "-d", "-f", "local", str(remote))
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | {
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"
    }

    def prefect(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [str(BIN / "prefect"), "--no-prompt", *args],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result

    prefect("work-pool", "create", "deepfake", "--type", "process", "--overwrite")
    prefect("deploy", "--all")
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        nightly = client.read_deployment_by_name("retrain/nightly")
        inbox = client.read_deployment_by_name("score-inbox/every-5-minutes")
        assert [s.schedule.cron for s in nightly.schedules] == ["0 2 * * *"]
        assert [s.schedule.cron for s in inbox.schedules] == ["*/5 * * * *"]
        assert nightly.work_pool_name == "deepfake"
        run = client.create_flow_run_from_deployment(nightly.id, parameters={"retries": 0})
    prefect("worker", "start", "--pool", "deepfake", "--run-once", timeout=800)
    with get_client(sync_client=True) as client:
        finished = client.read_flow_run(run.id)
    assert finished.state.is_completed(), finished.state.message
    promotion = json.loads((project / "reports/promotion.json").read_text())
    assert promotion["alias"] == "champion" and promotion["version"] == "1"
    assert any(remote.rglob("*")), "the retrain pushed nothing to the DVC remote"
    assert "Data and pipelines are up to date" in dvc(project, "status").stdout
