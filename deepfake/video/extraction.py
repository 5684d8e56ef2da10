"""Frames and face crops for a whole dataset, kept per video and keyed by content.

Each video's outputs carry a key made of its content hash, the parameters that shape them and an explicit
format version (FRAMES_VERSION, FACES_VERSION). A rerun redoes only the videos whose key changed, removes
the outputs of videos that left the dataset, and finishes what an interrupted run left undone. A video's outputs appear whole or
not at all: they are written beside their final place and renamed into it, the marker file last.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from deepfake.atomic import atomic_dir, write_json
from deepfake.config import FaceParams, FrameSampling, PoolSettings
from deepfake.errors import PermanentError, VideoError
from deepfake.images import image_suffix, read_image, write_image
from deepfake.video.face_detection import faces_in_frames, link_tracks, load_face_detector
from deepfake.video.frames import FrameReadReport, read_frames, read_still, sample_frame_indices
from deepfake.video.pool import Job, Outcome, Runner, run_jobs

# Bump by hand when the code changes what a video's frames or crops look like (not for refactors or
# comments): every video is then redone on the next run. Settings are part of the key already.
FRAMES_VERSION = 2  # 2: frames stored by deepfake.images (PNG when frames.jpeg_quality is null)
FACES_VERSION = 3  # 2: crops from the shared faces_in_frames loop, stored by deepfake.images; 3: faces MTCNN doubts
# followed around their box until they reach min_prob (which faces a video keeps can change)

FRAMES_MARKER = "frames.json"
FACE_COLUMNS = [
    "video_id",
    "split",
    "label",
    "label_id",
    "group",
    "frame_index",
    "time_s",
    "face",
    "track",
    "x1",
    "y1",
    "x2",
    "y2",
    "prob",
    "landmarks",
    "crop",
]
REPORT_COLUMNS = ["video_id", "status", "frames", "frames_with_face", "faces", "tracks", "reason"]


def content_key(**parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def remove_leftovers(folder: Path) -> None:
    """Temporary files and folders an interrupted run left behind (the atomic writers' dot-names)."""
    if folder.is_dir():
        for path in folder.iterdir():
            if path.name.startswith(".") and path.name.endswith((".tmp", ".old")):
                shutil.rmtree(path) if path.is_dir() else path.unlink()


# ---------------------------------------------------------------- frames


@dataclass(frozen=True)
class FramesJob:
    video_id: str
    path: str
    frame_count: int
    fps: float
    out_dir: str
    sampling: FrameSampling
    key: str
    decoder_threads: int
    kind: str = "video"  # or "photo": its one frame is the image itself


def frames_key(sha256: str, sampling: FrameSampling) -> str:
    return content_key(sha256=sha256, sampling=asdict(sampling), version=FRAMES_VERSION)


def extract_frames(job: FramesJob) -> dict:
    """Sample one video's frames to `<out_dir>/<video_id>/` (JPEG, or PNG) plus a manifest; return the manifest."""
    indices = sample_frame_indices(job.frame_count, job.fps, job.sampling)
    report = FrameReadReport()
    records = []
    with atomic_dir(Path(job.out_dir) / job.video_id) as folder:
        try:
            frames = (
                read_still(job.path, report)
                if job.kind == "photo"
                else read_frames(
                    job.path,
                    indices,
                    report=report,
                    decoder_threads=job.decoder_threads,
                    decoder=job.sampling.decoder,
                )
            )
            for index, time_s, frame in frames:
                name = f"{index:06d}{image_suffix(job.sampling.jpeg_quality)}"
                write_image(folder / name, frame, job.sampling.jpeg_quality)
                records.append({"frame_index": index, "time_s": round(time_s, 4), "file": name})
                height, width = frame.shape[:2]
        except VideoError as error:
            raise PermanentError(str(error)) from None
        if not records:
            raise PermanentError(f"no frame could be decoded ({report.note or 'empty stream'})")
        manifest = {
            "key": job.key,
            "video_id": job.video_id,
            "requested": report.requested,
            "read": report.read,
            "width": width,
            "height": height,
            "note": report.note,
            "frames": records,
        }
        write_json(manifest, folder / FRAMES_MARKER)
    return manifest


def read_frames_marker(folder: Path) -> dict | None:
    try:
        return json.loads((folder / FRAMES_MARKER).read_text())
    except (OSError, ValueError):
        return None


@dataclass
class StageResult:
    table: pd.DataFrame  # one row per frame, or per face
    report: pd.DataFrame  # one row per video: status and reason
    redone: int
    reused: int
    removed: int


def update_frames(
    videos: pd.DataFrame, out_dir: str | os.PathLike, sampling: FrameSampling, pool: PoolSettings
) -> StageResult:
    """Bring `out_dir` in line with `videos`: sample frames of new or changed videos, drop departed ones."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_leftovers(out_dir)
    manifests: dict[str, dict] = {}
    jobs = []
    for row in videos.itertuples():
        key = frames_key(row.sha256, sampling)
        existing = read_frames_marker(out_dir / row.video_id)
        if existing and existing["key"] == key:
            manifests[row.video_id] = existing
        else:
            jobs.append(
                Job(
                    row.video_id,
                    FramesJob(
                        row.video_id,
                        row.path,
                        int(row.frames),
                        float(row.fps),
                        str(out_dir),
                        sampling,
                        key,
                        pool.threads,
                        getattr(row, "kind", "video"),
                    ),
                )
            )
    failures = {}
    for outcome in run_jobs(
        extract_frames, jobs, pool, desc="frames", postfix=lambda done: {"failed": sum(not o.ok for o in done)}
    ):
        if outcome.ok:
            manifests[outcome.job.name] = outcome.result
        else:
            failures[outcome.job.name] = outcome.error
            shutil.rmtree(out_dir / outcome.job.name, ignore_errors=True)  # an older version is stale now
    current = set(videos["video_id"])
    departed = [p for p in out_dir.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name not in current]
    for folder in departed:
        shutil.rmtree(folder)

    rows, report = [], []
    for video_id in videos["video_id"]:
        if video_id in manifests:
            manifest = manifests[video_id]
            rows += [
                {"video_id": video_id, **record, "file": f"{video_id}/{record['file']}"}
                for record in manifest["frames"]
            ]
            status = "partial" if manifest["note"] else "ok"
            report.append(
                {"video_id": video_id, "status": status, "frames": manifest["read"], "reason": manifest["note"]}
            )
        else:
            report.append({"video_id": video_id, "status": "error", "frames": 0, "reason": failures.get(video_id, "")})
    table = pd.DataFrame(rows, columns=["video_id", "frame_index", "time_s", "file"])
    return StageResult(
        table,
        pd.DataFrame(report, columns=["video_id", "status", "frames", "reason"]),
        redone=len(jobs),
        reused=len(videos) - len(jobs),
        removed=len(departed),
    )


# ---------------------------------------------------------------- faces


@dataclass(frozen=True)
class FacesJob:
    video_id: str
    label: str
    frames_dir: str
    frames: tuple  # ((frame_index, time_s, file), ...)
    out_dir: str
    params: FaceParams
    key: str


_face_detectors: dict[str, object] = {}


def _shared_face_detector(runtime: str):
    """One MTCNN per process and runtime, built on first use."""
    if runtime not in _face_detectors:
        _face_detectors[runtime] = load_face_detector(runtime)
    return _face_detectors[runtime]


def faces_key(frames_key_: str, label: str, params: FaceParams) -> str:
    return content_key(frames=frames_key_, label=label, params=asdict(params), version=FACES_VERSION)


def crop_prefix(video_id: str) -> str:
    return f"{video_id}_"


def remove_crops(out_dir: Path, video_id: str) -> None:
    for label_dir in ("real", "fake"):
        for path in (out_dir / label_dir).glob(f"{crop_prefix(video_id)}[0-9][0-9][0-9][0-9][0-9][0-9]_*.*"):
            path.unlink()


def extract_faces(job: FacesJob) -> dict:
    """Detect, crop and track the faces in one video's sampled frames.

    Crops go to `<out_dir>/<real|fake>/`, the video's record (its faces, status and key) to
    `<out_dir>/parts/<video_id>.json`, written last: a record on disk means the crops are all there.
    """
    out_dir = Path(job.out_dir)
    stored_frames = ((index, time_s, read_image(Path(job.frames_dir) / file)) for index, time_s, file in job.frames)
    found = list(faces_in_frames(_shared_face_detector(job.params.runtime), stored_frames, job.params))
    detections = [frame.faces for frame in found]
    tracks = link_tracks(detections, job.params.track_iou)

    label_dir = out_dir / job.label.lower()
    label_dir.mkdir(parents=True, exist_ok=True)
    remove_crops(out_dir, job.video_id)
    rows = []
    with tempfile.TemporaryDirectory(prefix=f".{job.video_id}.", suffix=".tmp", dir=out_dir) as staging_dir:
        staging = Path(staging_dir)
        for frame, track_ids in zip(found, tracks):
            for number, (face, crop, landmarks, track) in enumerate(
                zip(frame.faces, frame.crops, frame.landmarks, track_ids)
            ):
                name = f"{crop_prefix(job.video_id)}{frame.index:06d}_{number}{image_suffix(job.params.jpeg_quality)}"
                write_image(staging / name, crop, job.params.jpeg_quality)
                rows.append(
                    {
                        "video_id": job.video_id,
                        "frame_index": frame.index,
                        "time_s": frame.time_s,
                        "face": number,
                        "track": track,
                        **dict(zip(("x1", "y1", "x2", "y2"), (round(v, 1) for v in face.box))),
                        "prob": round(face.prob, 4),
                        "landmarks": json.dumps(np.round(landmarks, 1).ravel().tolist()),
                        "crop": f"{job.label.lower()}/{name}",
                    }
                )
        # Each rename is atomic; a crash half way leaves whole crops without a record, so the video is redone.
        for row in rows:
            os.replace(staging / Path(row["crop"]).name, out_dir / row["crop"])
    record = {
        "key": job.key,
        "video_id": job.video_id,
        "frames": len(job.frames),
        "frames_with_face": sum(bool(faces) for faces in detections),
        "faces": rows,
        "tracks": len({row["track"] for row in rows}),
    }
    write_json(record, out_dir / "parts" / f"{job.video_id}.json")
    return record


def read_faces_record(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def update_faces(
    videos: pd.DataFrame,
    frames_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    params: FaceParams,
    pool: PoolSettings,
    *,
    run: Runner = run_jobs,
) -> StageResult:
    """Bring `out_dir` in line with the sampled frames: detect and crop new or changed videos only.

    `run` executes the per-video jobs: worker processes here by default, or any engine with the same
    contract as `run_jobs` (the faces flow passes one that fans them out over a Dask cluster).
    """
    frames_dir, out_dir = Path(frames_dir), Path(out_dir)
    parts_dir = out_dir / "parts"
    parts_dir.mkdir(parents=True, exist_ok=True)
    remove_leftovers(out_dir)
    remove_leftovers(parts_dir)
    records: dict[str, dict] = {}
    failures: dict[str, str] = {}
    jobs = []
    reused = 0
    for row in videos.itertuples():
        manifest = read_frames_marker(frames_dir / row.video_id)
        if manifest is None:
            failures[row.video_id] = "no frames (see the frames report)"
            continue
        key = faces_key(manifest["key"], row.label, params)
        existing = read_faces_record(parts_dir / f"{row.video_id}.json")
        if existing and existing["key"] == key:
            records[row.video_id] = existing
            reused += 1
            continue
        frames = tuple((f["frame_index"], f["time_s"], f["file"]) for f in manifest["frames"])
        jobs.append(
            Job(
                row.video_id,
                FacesJob(row.video_id, row.label, str(frames_dir / row.video_id), frames, str(out_dir), params, key),
            )
        )

    def postfix(done: list[Outcome]) -> dict:
        return {"faces": sum(len(o.result["faces"]) for o in done if o.ok), "failed": sum(not o.ok for o in done)}

    for outcome in run(extract_faces, jobs, pool, desc="faces", postfix=postfix):
        if outcome.ok:
            records[outcome.job.name] = outcome.result
        else:
            failures[outcome.job.name] = outcome.error
            remove_crops(out_dir, outcome.job.name)
            (parts_dir / f"{outcome.job.name}.json").unlink(missing_ok=True)

    keep = set(records)
    removed = 0
    for part in list(parts_dir.glob("*.json")):
        if part.stem not in keep:
            remove_crops(out_dir, part.stem)
            part.unlink()
            removed += 1

    info = videos.set_index("video_id")[["split", "label", "label_id", "group"]]
    rows, report = [], []
    for video_id in videos["video_id"]:
        record = records.get(video_id)
        if record is None:
            report.append(
                {
                    "video_id": video_id,
                    "status": "error",
                    "frames": 0,
                    "frames_with_face": 0,
                    "faces": 0,
                    "tracks": 0,
                    "reason": failures.get(video_id, ""),
                }
            )
            continue
        rows += record["faces"]
        found = len(record["faces"])
        report.append(
            {
                "video_id": video_id,
                "status": "ok" if found else "no_face",
                "frames": record["frames"],
                "frames_with_face": record["frames_with_face"],
                "faces": found,
                "tracks": record["tracks"],
                "reason": "" if found else f"no face passed the thresholds in {record['frames']} sampled frames",
            }
        )
    table = pd.DataFrame(rows, columns=[c for c in FACE_COLUMNS if c not in info.columns])
    table = table.join(info, on="video_id")[FACE_COLUMNS]
    return StageResult(
        table, pd.DataFrame(report, columns=REPORT_COLUMNS), redone=len(jobs), reused=reused, removed=removed
    )
