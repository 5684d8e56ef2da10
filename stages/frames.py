"""DVC stage `frames`: sample frames of every accepted video (only new or changed videos are decoded)."""

from __future__ import annotations

import pandas as pd

from deepfake.atomic import write_csv
from deepfake.config import Config
from deepfake.video.extraction import update_frames
from stages import run


def main(config: Config) -> None:
    out_dir = config.paths.frames
    result = update_frames(pd.read_csv(config.paths.videos_table), out_dir, config.frames, config.workers)
    write_csv(result.table, f"{out_dir}/manifest.csv")
    write_csv(result.report, f"{out_dir}/report.csv")
    failed = result.report[result.report["status"] != "ok"]
    print(
        f"frames: {len(result.table)} frames from {len(result.report) - (failed['status'] == 'error').sum()} videos "
        f"({result.redone} decoded, {result.reused} unchanged, {result.removed} removed), "
        f"{(failed['status'] == 'error').sum()} errors"
    )
    for row in failed.itertuples():
        print(f"  {row.status} {row.video_id}: {row.reason}")


if __name__ == "__main__":
    run("frames", main)
