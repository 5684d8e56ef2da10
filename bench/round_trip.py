"""What the storage round trip costs at inference, and what skipping it would change.

Training, calibration and the threshold see frames and crops after they were stored as JPEG (frames stage,
faces stage). `VideoDetector` passes its frames and crops through the same encoder and decoder in memory
(`deepfake.images.stored`), so it scores the pixels the model was fitted on. This measures, on real clips
from the shared set, in one run:
  1. the time of `VideoDetector.predict` with the round trip (JPEG 95, the default) and without it (frames
     and crops as decoded), alternated and repeated, best of each;
  2. how far the per-face logits and the video P(fake) move when the round trip is skipped, against the
     spread of the logits themselves (the mismatch lossless inference would have with JPEG training data).

    python bench/round_trip.py [--model models/model.pt --backbone efficientnet_lite0] [--clips 6] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deepfake.config import Config  # noqa: E402
from deepfake.model.classifier import load_classifier  # noqa: E402
from deepfake.serving.video_detector import DetectorConfig, VideoDetector  # noqa: E402
from deepfake.video.face_detection import load_face_detector  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "real-videos" / "videos"


def detector(model, config: Config, jpeg_quality: int | None, face_detector) -> VideoDetector:
    settings = DetectorConfig(
        backbone=config.model.backbone,
        input_size=config.model.input_size,
        sampling=replace(config.frames, jpeg_quality=jpeg_quality),
        faces=replace(config.faces, jpeg_quality=jpeg_quality),
    )
    return VideoDetector(model, settings, face_detector)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(ROOT / "models" / "model.pt"))
    parser.add_argument("--backbone", default=Config().model.backbone)
    parser.add_argument("--clips", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "bench" / "out" / "round_trip.json"))
    args = parser.parse_args()

    config = Config()
    model = load_classifier(args.model, args.backbone)
    face_detector = load_face_detector()
    with_trip, without_trip = (detector(model, config, q, face_detector) for q in (95, None))
    # The DFDC 1080p clip first, then others spread over the set's sources.
    clips = sorted(SHARED.glob("*.mp4"))
    clips = sorted(clips, key=lambda p: "abofeumbvv" not in p.name)[:1] + clips[:: max(1, len(clips) // args.clips)]
    clips = list(dict.fromkeys(clips))[: args.clips]
    rows = []
    for clip in clips:
        best = {"with": float("inf"), "without": float("inf")}
        for _ in range(args.repeats):
            for name, scorer in (("with", with_trip), ("without", without_trip)):
                started = time.perf_counter()
                scorer.predict(clip)
                best[name] = min(best[name], time.perf_counter() - started)
        row_with, faces_with = with_trip.predict_with_faces(clip)
        row_without, faces_without = without_trip.predict_with_faces(clip)
        logits_with = np.array([f.logit for f in faces_with])
        logits_without = np.array([f.logit for f in faces_without])
        same = len(logits_with) == len(logits_without)
        rows.append(
            {
                "clip": clip.name,
                "faces": len(faces_with),
                "faces_without_trip": len(faces_without),
                "seconds_with": round(best["with"], 3),
                "seconds_without": round(best["without"], 3),
                "time_ratio": round(best["with"] / best["without"], 3),
                "logit_std": round(float(logits_with.std()), 4) if len(logits_with) else None,
                "mean_abs_logit_change": round(float(np.abs(logits_with - logits_without).mean()), 4)
                if same and len(logits_with)
                else None,
                "p_fake_with": row_with["p_fake"],
                "p_fake_without": row_without["p_fake"],
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    summary = {
        "model": args.model,
        "backbone": args.backbone,
        "clips": rows,
        "median_time_ratio": float(np.median([r["time_ratio"] for r in rows])),
        "median_abs_logit_change": float(
            np.median([r["mean_abs_logit_change"] for r in rows if r["mean_abs_logit_change"] is not None])
        ),
        "median_logit_std": float(np.median([r["logit_std"] for r in rows if r["logit_std"] is not None])),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=2))
    print(
        f"time with / without the round trip: median {summary['median_time_ratio']:.3f}; per-face |logit change| "
        f"median {summary['median_abs_logit_change']:.4f} against a logit spread (std) of {summary['median_logit_std']:.4f}"
    )


if __name__ == "__main__":
    main()
