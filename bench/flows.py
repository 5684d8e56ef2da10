"""Benchmark: what Prefect orchestration adds to the demo pipeline.

Two fresh copies of the project (code, dvc.yaml, params.yaml; no data, no cache) run the whole demo pipeline,
one with `dvc repro`, the other with the retrain flow in a process with no Prefect server configured — so
the flow pays for starting its temporary server, as a first unattended run on a bare machine would. The
two runs alternate (dvc, flow, dvc, flow...) so the machine's background load falls on both alike.

    python bench/flows.py [--rounds 1] [--tiny] [--server]

--server measures the deployed setting instead: a Prefect server already running (started by the benchmark,
before the clock starts, and left running through both kinds of run), as a worker's flow runs see it.

--tiny shrinks the demo (fewer, smaller clips; 2 epochs) for a quick look; the figure that counts is the
full demo's. Writes bench/out/flows/result*.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out" / "flows"
FILES = ["dvc.yaml", "params.yaml", "pyproject.toml", ".dvcignore", ".dvc/config", ".dvc/.gitignore"]
DIRS = ["deepfake", "stages", "flows"]
BIN = Path(sys.executable).parent


def fresh_project(where: Path, tiny: bool) -> Path:
    for name in FILES:
        (where / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, where / name)
    for name in DIRS:
        shutil.copytree(ROOT / name, where / name, ignore=shutil.ignore_patterns("__pycache__"))
    if tiny:
        params = yaml.safe_load((where / "params.yaml").read_text())
        params["sample"].update(clips_per_face=2, frames=8, width=320, height=240)
        params["frames"]["per_video"] = 4
        params["train"]["epochs"] = 2
        (where / "params.yaml").write_text(yaml.safe_dump(params))
    subprocess.run(["git", "init", "-q"], cwd=where, check=True)
    # As `make demo` does: the sample clips are made before the pipeline, which does not make them.
    subprocess.run([str(BIN / "deepfake"), "make-sample"], cwd=where, check=True, capture_output=True)
    return where


def timed(command: list[str], cwd: Path, env: dict) -> float:
    started = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return time.perf_counter() - started


@contextlib.contextmanager
def prefect_server(home: Path):
    """A local Prefect server on a free port; yields its API URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/api"
    server = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=os.environ | {"PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(240):
            try:
                if urllib.request.urlopen(f"{url}/health", timeout=2).status == 200:
                    break
            except OSError:
                time.sleep(0.5)
        else:
            raise SystemExit("the Prefect server did not start")
        yield url
    finally:
        server.terminate()
        server.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--server", action="store_true")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        home = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        api = stack.enter_context(prefect_server(home)) if args.server else None
        result = measure(args, api)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"result{'_server' if args.server else ''}{'_tiny' if args.tiny else ''}.json").write_text(
        json.dumps(result, indent=2) + "\n"
    )
    print(json.dumps(result, indent=2))


def measure(args, api: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "MLFLOW_TRACKING"))}
    env |= {
        "PATH": f"{BIN}{os.pathsep}{env['PATH']}",
        "DVC_NO_ANALYTICS": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    flow = [
        sys.executable,
        "-c",
        "from flows.retrain import retrain; import sys; "
        "sys.exit(0 if retrain(pull=False, push=False, return_state=True).is_completed() else 1)",
    ]
    runs = {"dvc_repro_s": [], "retrain_flow_s": []}
    for _ in range(args.rounds):
        for key, command in (("dvc_repro_s", [str(BIN / "dvc"), "repro"]), ("retrain_flow_s", flow)):
            with tempfile.TemporaryDirectory() as tmp:
                run_env = env | ({"PREFECT_API_URL": api} if api else {"PREFECT_HOME": str(Path(tmp) / "prefect-home")})
                seconds = timed(command, fresh_project(Path(tmp) / "project", args.tiny), run_env)
            runs[key].append(round(seconds, 1))
            print(f"{key}: {seconds:.1f} s", flush=True)
    dvc_s, flow_s = min(runs["dvc_repro_s"]), min(runs["retrain_flow_s"])
    return {
        **runs,
        "demo": "tiny" if args.tiny else "full",
        "prefect": "running server" if api else "temporary server",
        "overhead_s": round(flow_s - dvc_s, 1),
        "overhead_fraction": round((flow_s - dvc_s) / dvc_s, 3),
    }


if __name__ == "__main__":
    main()
