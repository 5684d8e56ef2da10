"""DVC stage `faces`: MTCNN face crops of every sampled frame, in labelled folders, with a faces table."""

from __future__ import annotations

import pandas as pd

from deepfake.atomic import write_csv
from deepfake.extract import update_faces
from deepfake.faces import FaceParams
from deepfake.params import load_params
from deepfake.parallel import PoolSettings

VIDEOS_TABLE = "data/interim/videos.csv"
FRAMES_DIR = "data/frames"
OUT_DIR = "data/faces"


def main() -> None:
    params = load_params()
    faces = dict(params["faces"])
    jpeg_quality = faces.pop("jpeg_quality")
    pool = PoolSettings(**params["workers"])
    update = update_faces
    if pool.dask:  # only then are Prefect and Dask loaded
        from flows.faces import update_faces_on_dask as update
    result = update(pd.read_csv(VIDEOS_TABLE), FRAMES_DIR, OUT_DIR, FaceParams(**faces), jpeg_quality, pool)
    write_csv(result.table, f"{OUT_DIR}/faces.csv")
    write_csv(result.report, f"{OUT_DIR}/report.csv")
    report = result.report
    print(f"faces: {len(result.table)} crops from {(report['status'] == 'ok').sum()} videos "
          f"({result.redone} processed, {result.reused} unchanged, {result.removed} removed)")
    for row in report[report["status"] != "ok"].itertuples():
        print(f"  {row.status} {row.video_id}: {row.reason}")


if __name__ == "__main__":
    main()
