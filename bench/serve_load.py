"""Load check of `deepfake serve`: many uploads at once, all answered, latency and the server's peak memory.

Starts `deepfake serve` on a free port (the registry's champion, as `deepfake serve` does by default), sends
`--requests` uploads of one clip at the same moment, and while they run asks /v1/health every 0.2 s (it must
keep answering). Prints latency p50/p90/p99 (from the start of each upload to its answer), the error count,
the slowest health answer and the peak resident memory of the server process; writes them to
bench/out/serve_load.json. A benchmark, not a test: run it on a quiet machine.

    python bench/serve_load.py [--requests 20] [--workers 2] [--clip x.mp4] [--model models:/deepfake-detector@champion]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def demo_clip(out: Path) -> Path:
    """A 2 s 480x360 talking-portrait clip, like the demo's (made once)."""
    from deepfake.config import SampleSpec
    from deepfake.data.sample import make_sample

    clip = out / "clip" / "astronaut_0.mp4"
    if not clip.is_file():
        make_sample(
            out / "clip", spec=SampleSpec(clips_per_face=1, fakes_per_real=0, frames=48, fps=24, width=480, height=360)
        )
    return clip


class PeakMemory:
    """Samples the resident memory of a process and its children every 50 ms; keeps the peak."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> int:
        total = 0
        for process in [self.process, *self.process.children(recursive=True)]:
            try:
                total += process.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return total

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self.rss())

    def __enter__(self) -> PeakMemory:
        self.peak = self.rss()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def start_server(args, port: int) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "deepfake.cli",
        "serve",
        "--port",
        str(port),
        "--model",
        args.model,
        "--workers",
        str(args.workers),
        "--max-pending",
        str(max(32, args.requests)),
        "--timeout",
        "600",
    ]
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    for _ in range(1200):
        if process.poll() is not None:
            sys.exit(f"deepfake serve exited: {process.stderr.read()[-2000:]}")
        try:
            if requests.get(f"http://127.0.0.1:{port}/v1/health", timeout=2).ok:
                return process
        except requests.ConnectionError:
            time.sleep(0.1)
    sys.exit("deepfake serve did not start in 2 minutes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20, help="uploads sent at the same moment")
    parser.add_argument("--workers", type=int, default=2, help="the server's --workers")
    parser.add_argument("--clip", type=Path, help="video to upload; default: a generated 2 s 480x360 clip")
    parser.add_argument("--model", default="models:/deepfake-detector@champion")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    args = parser.parse_args()

    clip = args.clip or demo_clip(args.out / "serve_load")
    data = clip.read_bytes()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = start_server(args, port)
    try:
        model = requests.get(f"{url}/v1/model", timeout=30).json()
        results: list[tuple[int, float, str]] = []
        start = threading.Barrier(args.requests + 1)

        def upload() -> None:
            start.wait()
            began = time.perf_counter()
            try:
                response = requests.post(
                    f"{url}/v1/predict", files={"file": (clip.name, data, "video/mp4")}, timeout=900
                )
                status, verdict = response.status_code, response.json().get("verdict", response.text[:200])
            except requests.RequestException as error:
                status, verdict = 0, f"{type(error).__name__}: {error}"
            results.append((status, time.perf_counter() - began, verdict))

        threads = [threading.Thread(target=upload) for _ in range(args.requests)]
        for thread in threads:
            thread.start()
        health_seconds = []
        with PeakMemory(process.pid) as memory:
            idle_rss = memory.peak
            began = time.perf_counter()
            start.wait()
            while any(thread.is_alive() for thread in threads):
                asked = time.perf_counter()
                requests.get(f"{url}/v1/health", timeout=30).raise_for_status()
                health_seconds.append(time.perf_counter() - asked)
                time.sleep(0.2)
            wall = time.perf_counter() - began
        latencies = np.array([seconds for _, seconds, _ in results])
        errors = [(status, verdict) for status, _, verdict in results if status != 200]
        report = {
            "clip": str(clip),
            "clip_bytes": len(data),
            "model": model["uri"],
            "model_version": model["version"],
            "backbone": model["backbone"],
            "input_size": model["input_size"],
            "workers": args.workers,
            "requests": args.requests,
            "errors": len(errors),
            "error_examples": errors[:3],
            "verdicts": sorted({verdict for status, _, verdict in results if status == 200}),
            "latency_p50_s": round(float(np.percentile(latencies, 50)), 2),
            "latency_p90_s": round(float(np.percentile(latencies, 90)), 2),
            "latency_p99_s": round(float(np.percentile(latencies, 99)), 2),
            "wall_s": round(wall, 2),
            "videos_per_s": round(args.requests / wall, 3),
            "health_checks": len(health_seconds),
            "health_max_s": round(max(health_seconds, default=0.0), 3),
            "server_rss_idle_mb": round(idle_rss / 2**20),
            "server_rss_peak_mb": round(memory.peak / 2**20),
            "cpus": os.cpu_count(),
        }
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "serve_load.json").write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"{report['requests']} concurrent uploads of {clip.name} ({len(data) / 2**20:.2f} MB) to "
        f"{report['model']} v{report['model_version']} ({report['backbone']}, {report['workers']} workers, "
        f"{report['cpus']} CPUs): {report['errors']} errors"
    )
    print(
        f"latency p50 {report['latency_p50_s']} s, p90 {report['latency_p90_s']} s, p99 {report['latency_p99_s']} s; "
        f"all done in {report['wall_s']} s ({report['videos_per_s']} videos/s)"
    )
    print(f"/v1/health answered {report['health_checks']} times during the load, slowest {report['health_max_s']} s")
    print(
        f"server peak RSS {report['server_rss_peak_mb']} MB (idle with the model loaded: {report['server_rss_idle_mb']} MB)"
    )
    print(f"wrote {args.out / 'serve_load.json'}")
    if errors:
        sys.exit(1)


if __name__ == "__main__":
    main()
