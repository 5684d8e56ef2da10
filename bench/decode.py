"""Decoding the sampled frames of the shared clips: PyAV skipping unsampled B-frames (the default) against
PyAV decoding every frame and against OpenCV, in one run, alternating per clip (best of `--repeats`).

Also checks that all three give the same positions, times and pixels, and counts the clips on which the
skipping path had to fall back to counting (no B-frames, odd timestamps, a stream ending early).

    python bench/decode.py [--per-video 32] [--repeats 2]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deepfake.config import FrameSampling  # noqa: E402
from deepfake.video import frames  # noqa: E402
from deepfake.video.probe import probe_video  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"


def pyav_counting(path, indices):
    return frames._pyav_counting(path, indices, frames.FrameReadReport(requested=len(indices)), 0)


def fingerprints(read, path, indices) -> tuple[float, list]:
    started = time.perf_counter()
    seen = [(i, round(t, 3), hashlib.md5(image.tobytes()).hexdigest()) for i, t, image in read(path, indices)]
    return time.perf_counter() - started, seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-video", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    readers = {
        "pyav": lambda path, indices: frames.read_frames(path, indices, decoder="pyav"),
        "pyav_every_frame": pyav_counting,
        "opencv": lambda path, indices: frames.read_frames(path, indices, decoder="opencv"),
    }
    clips = sorted((SHARED / "real-videos" / "videos").glob("*.mp4")) + sorted(
        (SHARED / "dev-videos" / "videos").glob("*.mp4")
    )
    totals = dict.fromkeys(readers, 0.0)
    fallbacks, disagreements, rows = 0, [], []
    for path in clips:
        info = probe_video(path)
        indices = frames.sample_frame_indices(info.frames, info.fps, FrameSampling(per_video=args.per_video))
        try:
            list(frames._pyav_skipping(path, indices, 0))
        except frames._Unsure:
            fallbacks += 1
        best, results = {}, {}
        for _ in range(args.repeats):
            for name, read in readers.items():
                seconds, results[name] = fingerprints(read, path, indices)
                best[name] = min(best.get(name, seconds), seconds)
        for name in readers:
            totals[name] += best[name]
        rows.append({"clip": path.name, "width": info.width, "height": info.height, "frames": info.frames, **best})
        pixels = [[(i, digest) for i, _, digest in results[name]] for name in readers]  # OpenCV's times: within 1 ms
        if results["pyav"] != results["pyav_every_frame"] or not pixels[0] == pixels[1] == pixels[2]:
            disagreements.append(path.name)
    summary = {
        "clips": len(clips),
        "seconds": {name: round(value, 2) for name, value in totals.items()},
        "every_frame_over_skipping": round(totals["pyav_every_frame"] / totals["pyav"], 2),
        "opencv_over_skipping": round(totals["opencv"] / totals["pyav"], 2),
        "fell_back_to_counting": fallbacks,
        "disagreements": disagreements,
    }
    table = pd.DataFrame(rows)
    large = table["width"] * table["height"] >= 1280 * 720
    for name, part in (("720p_and_up", table[large]), ("smaller", table[~large])):
        summary[name] = {"clips": len(part), **{reader: round(part[reader].sum(), 2) for reader in readers}}
    print(json.dumps(summary, indent=2))
    out = ROOT / "bench" / "out" / "decode"
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    table.to_csv(out / "clips.csv", index=False)


if __name__ == "__main__":
    main()
