"""Load check of `deepfake serve`: many uploads at once, bad ones mixed in, every answer right, latency and memory.

Starts `deepfake serve` on a free port (the registry's champion, as `deepfake serve` does by default), sends
`--requests` uploads at the same moment, `--bad` of them bad (not a video, a truncated video, one over the
upload limit, a form without the `file` field, and an odd but legal 2000x16 video), and while they run asks
/v1/health every 0.2 s (it must keep answering). Checks every answer against what it should be (200 with a
verdict for a video, 422 or 413 with a reason for the bad ones, never a 5xx), and prints latency
p50/p90/p99, the slowest health answer and the server's resident memory before, at peak and after; writes
them to bench/out/serve_load.json. A benchmark, not a test: run it on a quiet machine.

    python bench/serve_load.py [--requests 20] [--bad 5] [--workers 2] [--clip x.mp4] [--model URI]
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


# Bad uploads: (kind, expected status); the odd but legal video is a video, so it gets a verdict.
BAD_KINDS = [("not_a_video", 422), ("truncated", 422), ("oversize", 413), ("no_file_field", 422), ("odd_legal", 200)]
MAX_UPLOAD_MB = 2.0


def thin_video(out: Path) -> bytes:
    import cv2

    path = out / "thin.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (2000, 16))
    for number in range(5):
        writer.write(np.full((16, 2000, 3), number * 40, np.uint8))
    writer.release()
    return path.read_bytes()


def upload_for(kind: str, clip: bytes, out: Path) -> tuple[str, str, bytes]:
    """(form field, file name, content) for one kind of upload."""
    if kind == "not_a_video":
        return "file", "notes.mp4", b"these are meeting notes, not a video\n" * 50
    if kind == "truncated":
        return "file", "cut.mp4", clip[: len(clip) // 3]
    if kind == "oversize":
        return "file", "huge.mp4", clip + bytes(int(MAX_UPLOAD_MB * 2**20) + 1)
    if kind == "no_file_field":
        return "video", "clip.mp4", clip
    if kind == "odd_legal":
        return "file", "thin.mp4", thin_video(out)
    return "file", "clip.mp4", clip


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
        "--max-upload-mb",
        str(MAX_UPLOAD_MB),
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
    parser.add_argument("--bad", type=int, default=5, help="of which bad (cycling through BAD_KINDS)")
    parser.add_argument("--workers", type=int, default=2, help="the server's --workers")
    parser.add_argument("--clip", type=Path, help="video to upload; default: a generated 2 s 480x360 clip")
    parser.add_argument("--model", default=None, help="registered model URI; default: the champion of register.name")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    args = parser.parse_args()

    from deepfake.config import project_config

    args.model = args.model or project_config(ROOT / "params.yaml").register.model_uri
    clip = args.clip or demo_clip(args.out / "serve_load")
    data = clip.read_bytes()
    kinds = [BAD_KINDS[n % len(BAD_KINDS)] for n in range(args.bad)] + [("video", 200)] * (args.requests - args.bad)
    uploads = [(kind, expected, *upload_for(kind, data, args.out / "serve_load")) for kind, expected in kinds]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = start_server(args, port)
    try:
        model = requests.get(f"{url}/v1/model", timeout=30).json()
        results: list[tuple[str, int, int, float, str]] = []  # kind, expected, status, seconds, verdict or detail
        start = threading.Barrier(args.requests + 1)

        def upload(kind: str, expected: int, field: str, name: str, content: bytes) -> None:
            start.wait()
            began = time.perf_counter()
            try:
                response = requests.post(
                    f"{url}/v1/predict",
                    files={field: (name, content, "video/mp4")},
                    timeout=900,
                )
                body = response.json()
                status, said = response.status_code, body.get("verdict") or body.get("detail", "")
            except (requests.RequestException, ValueError) as error:
                status, said = 0, f"{type(error).__name__}: {error}"
            results.append((kind, expected, status, time.perf_counter() - began, str(said)))

        threads = [threading.Thread(target=upload, args=item) for item in uploads]
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
        time.sleep(3)  # let the workers drop the last request's frames and tensors
        after_rss = memory.rss()
        latencies = np.array([seconds for kind, _, _, seconds, _ in results if kind == "video"])
        wrong = [
            (kind, status, said[:120]) for kind, expected, status, _, said in results if status != expected or not said
        ]
        errors = [(status, said) for kind, _, status, _, said in results if kind == "video" and status != 200]
        report = {
            "clip": str(clip),
            "clip_bytes": len(data),
            "model": model["uri"],
            "model_version": model["version"],
            "backbone": model["backbone"],
            "input_size": model["input_size"],
            "workers": args.workers,
            "requests": args.requests,
            "bad_requests": args.bad,
            "answers_wrong": len(wrong),
            "wrong_examples": wrong[:5],
            "server_errors": sum(status >= 500 for _, _, status, _, _ in results),
            "answers": {kind: [status, said[:100]] for kind, _, status, _, said in results if kind != "video"},
            "errors": len(errors),
            "error_examples": errors[:3],
            "verdicts": sorted({said for kind, _, status, _, said in results if kind == "video" and status == 200}),
            "latency_p50_s": round(float(np.percentile(latencies, 50)), 2),
            "latency_p90_s": round(float(np.percentile(latencies, 90)), 2),
            "latency_p99_s": round(float(np.percentile(latencies, 99)), 2),
            "wall_s": round(wall, 2),
            "videos_per_s": round(args.requests / wall, 3),
            "health_checks": len(health_seconds),
            "health_max_s": round(max(health_seconds, default=0.0), 3),
            "server_rss_idle_mb": round(idle_rss / 2**20),
            "server_rss_peak_mb": round(memory.peak / 2**20),
            "server_rss_after_mb": round(after_rss / 2**20),
            "cpus": os.cpu_count(),
        }
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "serve_load.json").write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"{report['requests']} concurrent uploads ({report['bad_requests']} bad) of {clip.name} "
        f"({len(data) / 2**20:.2f} MB) to {report['model']} v{report['model_version']} ({report['backbone']}, "
        f"{report['workers']} workers, {report['cpus']} CPUs): {report['answers_wrong']} wrong answers, "
        f"{report['server_errors']} server errors, {report['errors']} good uploads not scored"
    )
    for kind, (status, said) in report["answers"].items():
        print(f"  {kind}: {status} {said}")
    print(
        f"latency p50 {report['latency_p50_s']} s, p90 {report['latency_p90_s']} s, p99 {report['latency_p99_s']} s; "
        f"all done in {report['wall_s']} s ({report['videos_per_s']} videos/s)"
    )
    print(f"/v1/health answered {report['health_checks']} times during the load, slowest {report['health_max_s']} s")
    print(
        f"server RSS {report['server_rss_idle_mb']} MB idle with the model loaded, {report['server_rss_peak_mb']} MB "
        f"at peak, {report['server_rss_after_mb']} MB after"
    )
    print(f"wrote {args.out / 'serve_load.json'}")
    if errors or wrong:
        sys.exit(1)


if __name__ == "__main__":
    main()
