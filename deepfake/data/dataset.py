"""The dataset step: read each source's labelled media (videos and face photos), validate every file, group
fakes with their originals and photos by identity, and split train/val/test so no group straddles two splits.

Every input (metadata entry or file under a root) ends in exactly one of two tables: the accepted media
(videos.csv; a photo is a one-frame video to the later stages), or the rejects with the reason.
"""

from __future__ import annotations

import dataclasses
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
    list_media_files,
    normalize_label,
    normalize_split,
    read_metadata,
)
from deepfake.data.split import apply_split, assign_groups
from deepfake.errors import MetadataError, VideoError
from deepfake.video.probe import media_kind, probe_media, sha256_file

logger = logging.getLogger(__name__)

# What probing and hashing a file gives, in both tables below.
_PROBED = ["sha256", "size_bytes", "frames", "fps", "width", "height", "duration_s"]
VIDEO_COLUMNS = [
    *["video_id", "path", "relpath", "label", "label_id", "group", "split", "original"],
    *_PROBED,
    *["note", "source", "kind", "source_name"],
]
# A scanned source's table (scan_source): before grouping and splitting.
SCAN_COLUMNS = [
    *["video_id", "path", "relpath", "kind", "label", "label_id", "original", "given_split", "given_group"],
    *_PROBED,
    *["source", "note"],
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
        kinds = self.videos["kind"].value_counts()
        photos = f" and {kinds['photo']} photos" if "photo" in kinds else ""
        lines = [
            f"accepted {kinds.get('video', 0)} videos{photos}, rejected {len(self.rejects)} entries "
            f"(metadata: {self.metadata})"
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
    label: str = "",
    split: SplitParams = SplitParams(),
    min_frames: int = 2,
    workers: int = 4,
) -> Dataset:
    """One folder of labelled media, checked, grouped and split (see `scan_source` and `combine`)."""
    scan = scan_source(root, metadata, label=label, min_frames=min_frames, workers=workers)
    return combine({"": scan}, split)


def scan_source(
    root: str | os.PathLike,
    metadata: str | None = "auto",
    *,
    label: str = "",
    min_frames: int = 2,
    workers: int = 4,
) -> Dataset:
    """Every video and photo under `root` that its metadata labels, probed and hashed; not yet grouped or split.

    `label` labels the files the metadata leaves unlabelled, and with no metadata every file under the root
    (a folder of real face photos: `label="REAL"`). Returns a Dataset whose `videos` table has SCAN_COLUMNS.
    """
    root = Path(root)
    if not root.is_dir():
        raise MetadataError(f"{root}: dataset root is not a folder")
    if label:
        label = normalize_label(label)
    metadata_path = find_metadata(root, metadata)
    media_files = list_media_files(root)
    if metadata_path is None:
        entries = folder_entries(root, media_files)
        described = "real/ and fake/ folders"
        if not entries and label:
            entries = [Entry(file=relpath, label=label, source=f"file under {root.name}/") for relpath in media_files]
            described = f"every file labelled {label}"
        if not entries:
            raise MetadataError(
                f"{root}: no metadata.json, no metadata.csv and no real/ or fake/ folders with videos; "
                "set the metadata, lay the videos out as real/*.mp4 and fake/*.mp4, or give the folder a label"
            )
    else:
        entries = read_metadata(metadata_path, label)
        described = str(metadata_path)

    rejects: list[dict] = []

    def reject(path: str, reason: str, source: str) -> None:
        rejects.append({"path": path, "reason": reason, "source": source})

    # Resolve each entry to a file under root.
    by_basename = defaultdict(list)
    for relpath in media_files:
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

    for relpath in media_files:
        if relpath not in claimed:
            why = (
                f"file not listed in {metadata_path.name}; add it with a label to use it"
                if metadata_path
                else "file not under real/ or fake/; move it there to use it"
            )
            reject(relpath, why, "file under dataset root")

    # A file listed more than once is ambiguous whatever the copies say: reject every entry of it.
    listed = defaultdict(list)
    for entry, relpath in resolved:
        listed[relpath].append(entry)
    candidates: list[tuple[Entry, str, str]] = []
    for entry, relpath in resolved:
        if len(listed[relpath]) > 1:
            others = "; ".join(e.source for e in listed[relpath])
            reject(relpath, f"duplicate: listed {len(listed[relpath])} times in the metadata ({others})", entry.source)
            continue
        try:
            label_ = normalize_label(entry.label)
        except ValueError as error:
            reject(relpath, str(error), entry.source)
            continue
        candidates.append((entry, relpath, label_))

    # Probe and hash in threads: OpenCV and hashlib release the GIL.
    def inspect(relpath: str):
        try:
            return probe_media(root / relpath, min_frames=min_frames), sha256_file(root / relpath), None
        except VideoError as error:
            return None, None, str(error)
        except OSError as error:
            return None, None, f"cannot read file: {error.strerror or error}"
        except Exception as error:  # a case no check foresaw: this file's reject row, named, not the end of the run
            logger.exception("unexpected error while checking %s", relpath)
            return None, None, f"unexpected error while checking the file: {type(error).__name__}: {error}"

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = list(pool.map(inspect, [relpath for _, relpath, _ in candidates]))

    rows = []
    for (entry, relpath, label_), (info, digest, problem) in zip(candidates, results):
        if problem:
            reject(relpath, problem, entry.source)
            continue
        rows.append(
            {
                "video_id": video_id(relpath, digest),
                "path": (root / relpath).as_posix(),
                "relpath": relpath,
                "kind": media_kind(relpath),
                "label": label_,
                "label_id": LABEL_IDS[label_],
                "original": entry.original or "",
                "given_split": entry.split or "",  # checked by `combine`, and only when asked to honour it
                "given_group": entry.group or "",
                "sha256": digest,
                "size_bytes": (root / relpath).stat().st_size,
                "frames": info.frames,
                "fps": round(info.fps, 3),
                "width": info.width,
                "height": info.height,
                "duration_s": round(info.duration_s, 3),
                "source": entry.source,
                "note": (
                    f"header promises {info.header_frames} frames, {info.frames} decode"
                    if info.header_frames > info.frames
                    else ""
                ),
            }
        )
    media = pd.DataFrame(rows, columns=SCAN_COLUMNS)  # metadata order: the first of two identical files is kept
    rejects_table = pd.DataFrame(rejects, columns=REJECT_COLUMNS).sort_values("path", kind="stable")
    return Dataset(videos=media, rejects=rejects_table.reset_index(drop=True), metadata=described)


def combine(scans: dict[str, Dataset], split: SplitParams = SplitParams()) -> Dataset:
    """Scanned sources as one dataset: duplicates across them rejected, files grouped, groups split.

    Groups (a fake and its original, FaceForensics++ pairs, one identity's photos) never straddle splits.
    Photos have no video verdict to test, so they go to train and val only (val: people the model has not
    trained on, for choosing the epoch); videos are split train/val/test.
    """
    many = len(scans) > 1
    parts, rejects, warnings = [], [], []
    first_with_hash: dict[str, str] = {}
    for name, scan in scans.items():
        media = scan.videos.copy()
        media["source_name"] = name
        where = f"{name}: " if many else ""
        rejects.append(scan.rejects.assign(path=where + scan.rejects["path"]))
        keep = []
        for row in media.itertuples():
            name_ = where + row.relpath
            first = first_with_hash.setdefault(row.sha256, name_)
            keep.append(first == name_)
            if first != name_:
                reason = f"same content as {first} (sha256 {row.sha256[:12]}…)"
                rejects.append(pd.DataFrame([{"path": name_, "reason": reason, "source": row.source}]))
        media = media[pd.Series(keep, index=media.index, dtype=bool)]
        if len(media):
            groups, group_notes = assign_groups(media)
            media["group"] = (where + groups) if many else groups
            media["note"] = (media["note"] + "; " + group_notes).str.strip("; ")
            missing = (group_notes != "").sum()
            if missing:
                warnings.append(
                    f"{where}{missing} fakes name an original that is not in the dataset (see the note column)"
                )
        parts.append(media)
    media = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=SCAN_COLUMNS)
    media["given_split"] = media["given_split"].astype(object)
    bad_split = pd.Series(False, index=media.index)
    for row in media.itertuples():
        try:
            media.at[row.Index, "given_split"] = normalize_split(row.given_split) if split.use_given else None
        except ValueError as error:
            bad_split[row.Index] = True
            shown = f"{row.source_name}: {row.relpath}" if many else row.relpath
            rejects.append(pd.DataFrame([{"path": shown, "reason": str(error), "source": row.source}]))
    media = media[~bad_split]

    videos = media[media["kind"] == "video"]
    photos = media[media["kind"] == "photo"]
    split_parts = []
    for subset, params in ((videos, split), (photos, dataclasses.replace(split, test=0.0))):
        if len(subset):
            done, conflicts = apply_split(subset, params)
            split_parts.append(done)
            rejects.append(conflicts.rename(columns={"relpath": "path"}))
    table = pd.concat(split_parts, ignore_index=True) if split_parts else media.assign(group="", split="")
    table = table.reindex(columns=VIDEO_COLUMNS).sort_values(["source_name", "relpath"], kind="stable")
    all_rejects = pd.concat([r for r in rejects if len(r)], ignore_index=True) if any(len(r) for r in rejects) else None
    rejects_table = (
        all_rejects[REJECT_COLUMNS].sort_values("path", kind="stable").reset_index(drop=True)
        if all_rejects is not None
        else pd.DataFrame(columns=REJECT_COLUMNS)
    )
    described = "; ".join(f"{name}: {scan.metadata}" if many else scan.metadata for name, scan in scans.items())
    return Dataset(videos=table.reset_index(drop=True), rejects=rejects_table, metadata=described, warnings=warnings)


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
