"""Time per video of `deepfake predict`'s detector at several frames per video, in one run: the work that
`frames.per_video` buys (bench/quality.py measures what it costs in video AUC).

Each clip is scored at every setting in turn, alternating, best of `--repeats`; the ratios are against the
first setting. The classifier is the given weights (default: the quality benchmark's default run), else an
ImageNet-initialised one (its speed is the same).

    python bench/frames_per_video.py [--per-video 32,16,8] [--clips 6] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data"

from deepfake.atomic import write_json  # noqa: E402
from deepfake.config import FrameSampling  # noqa: E402
from deepfake.model.onnx_classifier import load_face_classifier  # noqa: E402
from deepfake.serving.video_detector import DetectorConfig, VideoDetector  # noqa: E402


def benchmark_clips(count: int) -> list[Path]:
    """A spread of the shared clips: DFDC 1080p, FaceForensics++, DeepFaceLive pairs, generated heads."""
    groups = [
        sorted((SHARED / "real-videos" / "videos").glob(pattern))
        for pattern in ("deepfake-detect--*.mp4", "ffpp-c40--*.mp4", "sadtalker--*.mp4")
    ] + [sorted((SHARED / "dev-videos" / "videos").glob("dfl--*.mp4"))]
    clips = []
    while len(clips) < count and any(groups):
        for group in groups:
            if group and len(clips) < count:
                clips.append(group.pop(0))
    if not clips:
        raise SystemExit(f"{SHARED}: no shared clips to time (../shared/data beside the project)")
    return clips


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-video", default="32,16,8")
    parser.add_argument("--clips", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--weights", default=str(ROOT / "bench/out/quality/default/seed0.pt"))
    parser.add_argument("--out", default=str(ROOT / "bench/out/frames_per_video.json"))
    args = parser.parse_args()

    settings = [int(n) for n in args.per_video.split(",")]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    weights = args.weights if Path(args.weights).is_file() else None
    if weights is None:
        import torch

        from deepfake.model.classifier import build_classifier

        weights = str(Path(args.out).with_suffix(".imagenet.pt"))
        torch.save(build_classifier("efficientnet_lite0", "imagenet")[0].state_dict(), weights)
    model = load_face_classifier(weights, "efficientnet_lite0", 224)
    detectors = {
        n: VideoDetector(model, DetectorConfig("efficientnet_lite0", sampling=FrameSampling(per_video=n)))
        for n in settings
    }
    clips = benchmark_clips(args.clips)
    detectors[settings[0]].predict(clips[0])  # warm-up: runtime sessions, thread pools
    seconds = {n: {clip.name: float("inf") for clip in clips} for n in settings}
    for _ in range(args.repeats):
        for clip in clips:
            for n in settings:
                started = time.perf_counter()
                result = detectors[n].predict(clip)
                seconds[n][clip.name] = min(seconds[n][clip.name], time.perf_counter() - started)
                print(f"{clip.name} {n} frames: {seconds[n][clip.name]:.2f} s, {result['verdict']}", flush=True)
    total = {n: sum(per_clip.values()) for n, per_clip in seconds.items()}
    results = {
        "clips": [clip.name for clip in clips],
        "weights": args.weights if weights == args.weights else "imagenet",
        "seconds_per_clip": {n: total[n] / len(clips) for n in settings},
        "ratio_to_first": {n: total[n] / total[settings[0]] for n in settings},
        "per_clip": seconds,
    }
    print(json.dumps({key: results[key] for key in ("seconds_per_clip", "ratio_to_first")}, indent=1))
    write_json(results, Path(args.out))


if __name__ == "__main__":
    main()
