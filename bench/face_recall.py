"""Face recall by MTCNN probability threshold, on real fakes and real clips: the evidence for `faces.min_prob`.

A swap that makes a face look odd to MTCNN also lowers its face probability; a threshold that drops those faces
makes the detector blind to exactly the videos it is asked about. For each clip of ../shared/data/real-videos
and dev-videos, at the sampled frames of params.yaml, MTCNN (whole frame, as the faces stage runs it) reports
its faces at any probability. Per label and candidate threshold: the share of frames with a face kept, and the
clips left with no face at all. Faces between the lowest and the highest candidate threshold go to a contact
sheet (bench/out/face_recall/between.png) to check by eye that they are faces, not walls or hands.

    python bench/face_recall.py [--thresholds 0.5,0.7,0.8,0.9] [--limit N]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data"


def clips() -> pd.DataFrame:
    rows = []
    for folder in ("real-videos", "dev-videos"):
        metadata = json.loads((SHARED / folder / "metadata.json").read_text())
        for name, entry in sorted(metadata.items()):
            rows.append(
                {"set": folder, "file": name, "label": entry["label"], "path": SHARED / folder / "videos" / name}
            )
    return pd.DataFrame(rows)


def main() -> None:
    from deepfake.config import load_config
    from deepfake.video.face_detection import crop_with_margin, detect_faces_batch, load_face_detector
    from deepfake.video.frames import read_frames, sample_frame_indices
    from deepfake.video.probe import probe_video

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--thresholds", default="0.5,0.6,0.7,0.8,0.9")
    parser.add_argument("--limit", type=int, default=0, help="clips per folder (0: all)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "out" / "face_recall"))
    args = parser.parse_args()
    thresholds = [float(t) for t in args.thresholds.split(",")]
    config = load_config(ROOT / "params.yaml")
    params = dataclasses.replace(config.faces, min_prob=min(thresholds), max_faces=1)  # the largest face
    detector = load_face_detector(config.faces.runtime)
    table = clips()
    if args.limit:
        table = table.groupby("set").head(args.limit)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    frames_rows, between = [], []
    for number, clip in enumerate(table.itertuples(), 1):
        info = probe_video(clip.path)
        indices = sample_frame_indices(info.frames, info.fps, config.frames)
        frames = list(read_frames(clip.path, indices))
        found = detect_faces_batch(detector, [frame for _, _, frame in frames], params, bgr=True)
        for (index, _, frame), faces in zip(frames, found):
            prob = faces[0].prob if faces else 0.0
            frames_rows.append({"set": clip.set, "file": clip.file, "label": clip.label, "frame": index, "prob": prob})
            if faces and prob < max(thresholds) and len(between) < 64:
                crop, _ = crop_with_margin(frame, faces[0], margin=0.3, size=96)
                cv2.putText(crop, f"{prob:.2f}", (2, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 255, 255), 1)
                between.append(crop)
        print(f"{number}/{len(table)} {clip.file}", flush=True)
    frames_table = pd.DataFrame(frames_rows)
    frames_table.to_csv(out / "frames.csv", index=False)
    summary = []
    for (folder, label), group in frames_table.groupby(["set", "label"]):
        for threshold in thresholds:
            kept = group["prob"] >= threshold
            per_clip = kept.groupby(group["file"]).sum()
            summary.append(
                {
                    "set": folder,
                    "label": label,
                    "min_prob": threshold,
                    "clips": int(per_clip.size),
                    "frames": int(len(group)),
                    "frames_with_face": round(float(kept.mean()), 3),
                    "clips_without_face": int((per_clip == 0).sum()),
                }
            )
    summary = pd.DataFrame(summary)
    summary.to_csv(out / "summary.csv", index=False)
    print(summary.to_string(index=False))
    if between:
        rows = [
            np.hstack(between[i : i + 8] + [np.zeros_like(between[0])] * (8 - len(between[i : i + 8])))
            for i in range(0, len(between), 8)
        ]
        cv2.imwrite(str(out / "between.png"), np.vstack(rows))


if __name__ == "__main__":
    main()
