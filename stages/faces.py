"""DVC stage `faces`: MTCNN face crops of every sampled frame, in labelled folders, with a faces table.

With `workers.dask` set the per-video jobs run on a Dask cluster instead of local worker processes.
"""

from __future__ import annotations

import pandas as pd

from deepfake.atomic import write_csv
from deepfake.config import Config
from deepfake.video.extraction import update_faces
from stages import run


def main(config: Config) -> None:
    out_dir = config.paths.faces
    result = update_faces(
        pd.read_csv(config.paths.videos_table), config.paths.frames, out_dir, config.faces, config.workers
    )
    write_csv(result.table, config.paths.faces_table)
    write_csv(result.report, f"{out_dir}/report.csv")
    report = result.report
    print(
        f"faces: {len(result.table)} crops from {(report['status'] == 'ok').sum()} videos "
        f"({result.redone} processed, {result.reused} unchanged, {result.removed} removed), "
        f"{(report['status'] == 'error').sum()} errors, {(report['status'] == 'no_face').sum()} without a face"
    )
    for row in report[report["status"] != "ok"].itertuples():
        print(f"  {row.status} {row.video_id}: {row.reason}")


if __name__ == "__main__":
    run("faces", main)
