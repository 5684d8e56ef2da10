"""DVC stage `frames`: sample frames of every accepted video (only new or changed videos are decoded)."""

from __future__ import annotations

import pandas as pd

from deepfake.atomic import write_csv
from deepfake.extract import update_frames
from deepfake.frames import FrameSampling
from deepfake.params import load_params
from deepfake.parallel import PoolSettings

VIDEOS_TABLE = "data/interim/videos.csv"
OUT_DIR = "data/frames"


def main() -> None:
    params = load_params()
    frames, pool = params["frames"], params["workers"]
    result = update_frames(
        pd.read_csv(VIDEOS_TABLE), OUT_DIR,
        FrameSampling(per_video=frames["per_video"], per_second=frames["per_second"]),
        jpeg_quality=frames["jpeg_quality"], pool=PoolSettings(**pool),
    )
    write_csv(result.table, f"{OUT_DIR}/manifest.csv")
    write_csv(result.report, f"{OUT_DIR}/report.csv")
    failed = result.report[result.report["status"] != "ok"]
    print(f"frames: {len(result.table)} frames from {len(result.report) - (failed['status'] == 'error').sum()} videos "
          f"({result.redone} decoded, {result.reused} unchanged, {result.removed} removed)")
    for row in failed.itertuples():
        print(f"  {row.status} {row.video_id}: {row.reason}")


if __name__ == "__main__":
    main()
