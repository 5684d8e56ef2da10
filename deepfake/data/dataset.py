"""The dataset step: read labelled-video metadata, validate every video, group fakes with their originals
and split train/val/test so that no group straddles two splits.

Every input (metadata entry or video file under the root) ends in exactly one of two tables: the accepted
videos, or the rejects with the reason.
"""

from __future__ import annotations

import logging
import os
import re
import unicodedata
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from deepfake.atomic import write_csv
from deepfake.config import SplitParams
from deepfake.data.metadata import (
    LABEL_IDS,
    SPLITS,
    Entry,
    find_metadata,
    folder_entries,
    list_video_files,
    normalize_label,
    normalize_split,
    read_metadata,
)
from deepfake.data.split import apply_split, assign_groups
from deepfake.errors import MetadataError, VideoError
from deepfake.video.probe import probe_video, sha256_file

logger = logging.getLogger(__name__)

VIDEO_COLUMNS = [
    "video_id",
    "path",
    "relpath",
    "label",
    "label_id",
    "group",
    "split",
    "original",
    "sha256",
    "size_bytes",
    "frames",
    "fps",
    "width",
    "height",
    "duration_s",
    "note",
    "source",
]
REJECT_COLUMNS = ["path", "reason", "source"]


@dataclass
class Dataset:
    videos: pd.DataFrame
    rejects: pd.DataFrame
    metadata: str = ""
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        counts = self.videos.groupby(["split", "label"]).size() if len(self.videos) else pd.Series(dtype=int)
        parts = []
        for split in SPLITS:
            if split in counts.index.get_level_values(0):
                by_label = counts.loc[split]
                parts.append(f"{split} {by_label.sum()} ({', '.join(f'{n} {lab}' for lab, n in by_label.items())})")
        lines = [
            f"accepted {len(self.videos)} videos, rejected {len(self.rejects)} entries (metadata: {self.metadata})"
        ]
        if parts:
            lines.append("splits: " + "; ".join(parts))
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)

    def write(self, out_dir: str | os.PathLike) -> tuple[Path, Path]:
        """Write videos.csv and rejects.csv into `out_dir`, each atomically."""
        videos_path, rejects_path = Path(out_dir) / "videos.csv", Path(out_dir) / "rejects.csv"
        write_csv(self.videos, videos_path)
        write_csv(self.rejects, rejects_path)
        return videos_path, rejects_path


def build_dataset(
    root: str | os.PathLike,
    metadata: str | None = "auto",
    *,
    split: SplitParams = SplitParams(),
    min_frames: int = 2,
    workers: int = 4,
) -> Dataset:
    root = Path(root)
    if not root.is_dir():
        raise MetadataError(f"{root}: dataset root is not a folder")
    metadata_path = find_metadata(root, metadata)
    video_files = list_video_files(root)
    if metadata_path is None:
        entries = folder_entries(root, video_files)
        if not entries:
            raise MetadataError(
                f"{root}: no metadata.json, no metadata.csv and no real/ or fake/ folders with videos; "
                "set dataset.metadata or lay the videos out as real/*.mp4 and fake/*.mp4"
            )
        described = "real/ and fake/ folders"
    else:
        entries = read_metadata(metadata_path)
        described = str(metadata_path)

    rejects: list[dict] = []

    def reject(path: str, reason: str, source: str) -> None:
        rejects.append({"path": path, "reason": reason, "source": source})

    # Resolve each entry to a file under root.
    by_basename = defaultdict(list)
    for relpath in video_files:
        by_basename[Path(relpath).name].append(relpath)
    base_dirs = [metadata_path.parent] if metadata_path else []
    base_dirs.append(root)
    resolved: list[tuple[Entry, str]] = []
    claimed: set[str] = set()
    for entry in entries:
        relpath, problem = _resolve(entry.file, root, base_dirs, by_basename)
        if relpath is None:
            reject(entry.file, problem, entry.source)
            continue
        claimed.add(relpath)
        resolved.append((entry, relpath))

    for relpath in video_files:
        if relpath not in claimed:
            why = (
                f"video not listed in {metadata_path.name}; add it with a label to use it"
                if metadata_path
                else "video not under real/ or fake/; move it there to use it"
            )
            reject(relpath, why, "file under dataset root")

    # A file listed more than once is ambiguous whatever the copies say: reject every entry of it.
    listed = defaultdict(list)
    for entry, relpath in resolved:
        listed[relpath].append(entry)
    candidates: list[tuple[Entry, str, str, str | None]] = []
    for entry, relpath in resolved:
        if len(listed[relpath]) > 1:
            others = "; ".join(e.source for e in listed[relpath])
            reject(relpath, f"duplicate: listed {len(listed[relpath])} times in the metadata ({others})", entry.source)
            continue
        try:
            label = normalize_label(entry.label)
            given_split = normalize_split(entry.split) if split.use_given else None
        except ValueError as error:
            reject(relpath, str(error), entry.source)
            continue
        candidates.append((entry, relpath, label, given_split))

    # Probe and hash in threads: OpenCV and hashlib release the GIL.
    def inspect(relpath: str):
        try:
            return probe_video(root / relpath, min_frames=min_frames), sha256_file(root / relpath), None
        except VideoError as error:
            return None, None, str(error)
        except OSError as error:
            return None, None, f"cannot read file: {error.strerror or error}"
        except Exception as error:  # a case no check foresaw: this file's reject row, named, not the end of the run
            logger.exception("unexpected error while checking %s", relpath)
            return None, None, f"unexpected error while checking the video: {type(error).__name__}: {error}"

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = list(pool.map(inspect, [relpath for _, relpath, _, _ in candidates]))

    rows = []
    first_with_hash: dict[str, str] = {}
    for (entry, relpath, label, given_split), (info, digest, problem) in zip(candidates, results):
        if problem:
            reject(relpath, problem, entry.source)
            continue
        if digest in first_with_hash:
            reject(relpath, f"same content as {first_with_hash[digest]} (sha256 {digest[:12]}…)", entry.source)
            continue
        first_with_hash[digest] = relpath
        rows.append(
            {
                "video_id": video_id(relpath, digest),
                "path": (root / relpath).as_posix(),
                "relpath": relpath,
                "label": label,
                "label_id": LABEL_IDS[label],
                "original": entry.original or "",
                "given_split": given_split,
                "sha256": digest,
                "size_bytes": (root / relpath).stat().st_size,
                "frames": info.frames,
                "fps": round(info.fps, 3),
                "width": info.width,
                "height": info.height,
                "duration_s": round(info.duration_s, 3),
                "source": entry.source,
                "probe_note": (
                    f"header promises {info.header_frames} frames, {info.frames} decode"
                    if info.header_frames > info.frames
                    else ""
                ),
            }
        )

    videos = pd.DataFrame(rows, columns=[*VIDEO_COLUMNS, "given_split", "probe_note"])
    warnings: list[str] = []
    if len(videos):
        videos["group"], group_notes = assign_groups(videos)
        videos["note"] = (videos["probe_note"] + "; " + group_notes).str.strip("; ")
        videos, conflicts = apply_split(videos, split)
        for row in conflicts.itertuples():
            reject(row.relpath, row.reason, row.source)
        missing = (group_notes != "").sum()
        if missing:
            warnings.append(f"{missing} fakes name an original that is not in the dataset (see the note column)")
    videos = videos[VIDEO_COLUMNS].sort_values("relpath", kind="stable").reset_index(drop=True)
    rejects_table = pd.DataFrame(rejects, columns=REJECT_COLUMNS).sort_values("path", kind="stable")
    return Dataset(videos=videos, rejects=rejects_table.reset_index(drop=True), metadata=described, warnings=warnings)


def _resolve(file: str, root: Path, base_dirs: list[Path], by_basename: dict[str, list[str]]):
    """(relpath under root, None) for an entry's file, or (None, reason) when it cannot be found."""
    if not file or file.startswith("<item"):
        return None, "metadata entry has no file name"
    if "\x00" in file:
        return None, "file name contains a NUL byte"
    for base in base_dirs:
        path = (base / file).resolve()
        if path.is_file():
            try:
                return path.relative_to(root.resolve()).as_posix(), None
            except ValueError:
                return None, f"file is outside the dataset root {root}"
    matches = by_basename.get(Path(file).name, [])
    if len(matches) == 1:
        return matches[0], None
    if len(matches) > 1:
        return (
            None,
            f"ambiguous: {len(matches)} videos under the root are named {Path(file).name!r} ({', '.join(matches)})",
        )
    return None, "file listed in metadata not found under the dataset root"


def video_id(relpath: str, digest: str) -> str:
    """A file-system-safe, readable id: the ASCII-folded file stem plus the start of the content hash."""
    stem = unicodedata.normalize("NFKD", Path(relpath).stem).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._-")[:60] or "video"
    return f"{slug}-{digest[:8]}"
