"""Benchmark of the frames and faces stages on real clips (default: ../shared/data/real-videos).

Measures, in one run on the same machine:
  1. the pipeline (update_frames + update_faces) with 1 worker and with 2 workers, alternated and repeated
     (the best of each counts), with the cores each kept busy, beside the machine's own 2-process scaling;
  2. the naive way at the same sampled frames: read() every frame up to each sampled index, MTCNN on each
     full-resolution frame one at a time;
  3. adding one video to the already processed set;
and writes quality figures (faces per frame on talking-head clips, tracks in the street scene) and a
contact sheet of crops to bench/out/. Usage:

    python bench/frames_faces.py [--videos DIR] [--limit N] [--repeats N] [--skip-naive] [--against-naive]

`--against-naive` runs only what the ratio to the naive way needs: the 2-worker pipeline once, the faces stage
with the previous and the current defaults, and the naive way (about half the time).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import resource
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from deepfake.config import FaceParams, FrameSampling, PoolSettings
from deepfake.data.dataset import build_dataset
from deepfake.video.extraction import update_faces, update_frames
from deepfake.video.frames import sample_frame_indices

ROOT = Path(__file__).resolve().parents[1]
TALKING_HEADS = ("liveportrait--", "sadtalker--", "video-retalking--", "face-recognition--")
STREET_SCENE = "facenet-pytorch--video"


def cpu_seconds() -> float:
    """CPU time of this process and of its finished child processes (the pool's workers once shut down)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run_pipeline(videos: pd.DataFrame, work: Path, sampling: FrameSampling, params: FaceParams, pool: PoolSettings):
    started, cpu = time.perf_counter(), cpu_seconds()
    frames = update_frames(videos, work / "frames", sampling, pool)
    faces = update_faces(videos, work / "frames", work / "faces", params, pool)
    seconds = time.perf_counter() - started
    cores = (cpu_seconds() - cpu) / seconds
    print(f"{pool.workers} worker(s): {seconds:.1f} s, {cores:.2f} cores busy on average", flush=True)
    return seconds, cores, frames, faces


def run_naive(videos: pd.DataFrame, sampling: FrameSampling, params: FaceParams) -> tuple[float, int]:
    """read() every frame up to each sampled one; MTCNN, as constructed by default, on the full frame."""
    import torch
    from facenet_pytorch import MTCNN

    torch.set_num_threads(2)
    detector = MTCNN(keep_all=True, device="cpu")
    started = time.perf_counter()
    found = 0
    for row in videos.itertuples():
        wanted = set(sample_frame_indices(int(row.frames), float(row.fps), sampling))
        capture = cv2.VideoCapture(row.path)
        for index in range(max(wanted) + 1):
            ok, frame = capture.read()
            if not ok:
                break
            if index in wanted:
                _, probs = detector.detect(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
                found += sum(p >= params.min_prob for p in probs) if probs is not None and probs[0] is not None else 0
        capture.release()
    return time.perf_counter() - started, found


def _spin(_=None) -> float:
    started, total = time.perf_counter(), 0
    for number in range(20_000_000):
        total += number
    return time.perf_counter() - started


def machine_scaling() -> float:
    """The ceiling for 2 workers here and now: pure-Python work in 2 processes at once vs 1 (2.0 on two
    idle cores)."""
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(_spin, [0, 1]))  # start both processes first
        alone = min(pool.submit(_spin).result() for _ in range(2))
        started = time.perf_counter()
        list(pool.map(_spin, [0, 1]))
        return round(2 * alone / (time.perf_counter() - started), 2)


def contact_sheet(faces: pd.DataFrame, faces_dir: Path, target: Path, per_video: int = 4, tile: int = 96) -> None:
    tiles = []
    for _, group in faces.groupby("video_id"):
        picks = group.iloc[np.linspace(0, len(group) - 1, min(per_video, len(group))).astype(int)]
        for crop in picks["crop"]:
            tiles.append(cv2.resize(cv2.imread(str(faces_dir / crop)), (tile, tile)))
    columns = 16
    while len(tiles) % columns:
        tiles.append(np.zeros((tile, tile, 3), np.uint8))
    rows = [np.hstack(tiles[i : i + columns]) for i in range(0, len(tiles), columns)]
    cv2.imwrite(str(target), np.vstack(rows))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--videos", default=str(ROOT.parent / "shared/data/real-videos"))
    parser.add_argument("--limit", type=int, default=0, help="use only the first N videos")
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument(
        "--threads-per-worker",
        type=int,
        default=0,
        help="fix threads per worker (0: cores / workers, the default) to compare pool scaling alone",
    )
    parser.add_argument("--repeats", type=int, default=2, help="runs of each pool size, alternated; the best counts")
    parser.add_argument("--against-naive", action="store_true", help="2 workers once, no incremental run")
    parser.add_argument("--out", default=str(ROOT / "bench/out/frames_faces"))
    args = parser.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)

    videos = build_dataset(args.videos).videos
    if args.limit:
        videos = videos.head(args.limit)
    sampling, params = FrameSampling(per_video=32), FaceParams()
    results: dict = {"videos": len(videos), "frames_per_video": sampling.per_video}

    threads = args.threads_per_worker
    results["threads_per_worker"] = threads or "cores / workers"
    # This machine's cores are shared with other tenants and their speed drifts by tens of percent from minute
    # to minute: 1 and 2 workers are run alternately, from scratch each time, and each one's best time kept.
    # The cores each run keeps busy (CPU time / wall time) say how much a second worker can add: one worker
    # already spreads detection and decoding over both cores with threads.
    runs: dict[int, list[tuple[float, float]]] = {1: [], 2: []}
    for _ in range(1 if args.against_naive else args.repeats):
        for workers in (2,) if args.against_naive else (1, 2):
            shutil.rmtree(out / f"w{workers}", ignore_errors=True)
            seconds, cores, frames, faces = run_pipeline(
                videos, out / f"w{workers}", sampling, params, PoolSettings(workers=workers, threads_per_worker=threads)
            )
            runs[workers].append((seconds, cores))
    (one, one_cores), (two, two_cores) = min(runs[1] or runs[2]), min(runs[2])
    results.update(
        pipeline_1_worker_s=round(one, 1),
        pipeline_2_workers_s=round(two, 1),
        pipeline_1_worker_runs_s=[round(t, 1) for t, _ in runs[1]],
        pipeline_2_workers_runs_s=[round(t, 1) for t, _ in runs[2]],
        cores_busy_1_worker=round(one_cores, 2),
        cores_busy_2_workers=round(two_cores, 2),
        speedup_2_workers=round(one / two, 2),
        faces=len(faces.table),
        frames=len(frames.table),
        machine_2_process_scaling=machine_scaling(),
    )

    if args.against_naive:  # one worker was not run: its figures are the two workers'
        for key in ("pipeline_1_worker_s", "pipeline_1_worker_runs_s", "cores_busy_1_worker", "speedup_2_workers"):
            results.pop(key)
    else:
        # Incremental: the 2-worker output minus one video, then that video added back.
        last = videos.iloc[[-1]]
        subset = videos.iloc[:-1]
        run_pipeline(subset, out / "w2", sampling, params, PoolSettings(workers=2))
        added, _, _, again = run_pipeline(videos, out / "w2", sampling, params, PoolSettings(workers=2))
        results.update(
            add_one_video_s=round(added, 1),
            add_one_fraction_of_full=round(added / two, 3),
            add_one_video=last["video_id"].item(),
            add_one_redone=again.redone,
        )

    # The previous defaults (facenet-pytorch's MTCNN on every sampled frame whole), one worker, on the frames
    # made above: what ONNX Runtime and tracking buy in the faces stage alone, and the faces each finds.
    previous = dataclasses.replace(params, runtime="torch", detect_every=1, keep_prob=params.min_prob)
    frames_dir = out / ("w2" if args.against_naive else "w1") / "frames"
    for name, settings in (("previous", previous), ("current", params)):
        shutil.rmtree(out / "faces_only", ignore_errors=True)
        started = time.perf_counter()
        found = update_faces(videos, frames_dir, out / "faces_only", settings, PoolSettings(workers=1))
        results[f"faces_stage_{name}_s"] = round(time.perf_counter() - started, 1)
        results[f"faces_{name}"] = len(found.table)
    results["faces_stage_speedup_vs_previous"] = round(
        results["faces_stage_previous_s"] / results["faces_stage_current_s"], 2
    )

    if not args.skip_naive:
        # A fresh interpreter: the naive way must run facenet-pytorch exactly as it ships, untouched by the
        # resampling the pipeline's load_detector installs.
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            naive, naive_faces = pool.submit(run_naive, videos, sampling, params).result()
        results.update(
            naive_s=round(naive, 1), naive_faces=naive_faces, speedup_vs_naive_2_workers=round(naive / two, 2)
        )
        if not args.against_naive:
            results["speedup_vs_naive_1_worker"] = round(naive / one, 2)

    report = faces.report.merge(videos[["video_id", "relpath"]], on="video_id")
    heads = report[report["relpath"].str.contains("|".join(TALKING_HEADS))]
    street = report[report["relpath"].str.contains(STREET_SCENE)]
    results.update(
        talking_head_clips=len(heads),
        talking_head_frames_with_face=round(heads["frames_with_face"].sum() / max(1, heads["frames"].sum()), 4),
        talking_head_worst=heads.assign(rate=heads["frames_with_face"] / heads["frames"])
        .nsmallest(3, "rate")[["relpath", "rate"]]
        .to_dict("records"),
        street_scene_tracks=int(street["tracks"].sum()),
        no_face_videos=report.loc[report["status"] != "ok", "relpath"].tolist(),
    )
    contact_sheet(faces.table, out / "w2" / "faces", out / "contact_sheet.png")
    report.to_csv(out / "faces_report.csv", index=False)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
