"""The dataset step: read labelled-video metadata, validate every video, group fakes with their originals
and split train/val/test so that no group straddles two splits.

Every input (metadata entry or video file under the root) ends in exactly one of two tables: the accepted
videos, or the rejects with the reason.
"""

from __future__ import annotations

import json
import math
import os
import re
import unicodedata
import warnings
from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from deepfake.atomic import write_csv
from deepfake.video import VideoError, is_video_file, probe_video, sha256_file

LABEL_IDS = {"REAL": 0, "FAKE": 1}
# Numeric and boolean labels answer "is this video fake?", as in DFDC's and most CSV exports' convention.
LABEL_ALIASES = {
    **dict.fromkeys(["real", "0", "false", "original", "pristine", "genuine", "authentic"], "REAL"),
    **dict.fromkeys(["fake", "1", "true", "deepfake", "manipulated", "synthetic"], "FAKE"),
}
SPLITS = ("train", "val", "test")
SPLIT_ALIASES = {
    **dict.fromkeys(["train", "training"], "train"),
    **dict.fromkeys(["val", "valid", "validation", "dev"], "val"),
    **dict.fromkeys(["test", "testing", "holdout"], "test"),
}
FOLDER_LABELS = {"real": "REAL", "fake": "FAKE"}
METADATA_CANDIDATES = ("metadata.json", "metadata.csv")
# FaceForensics++ names a fake `<target>_<source>.mp4` beside originals `<target>.mp4` and `<source>.mp4`,
# and the fake carries faces of both. A shared prefix (`ffpp-c40--deepfakes_`) must match for names to link.
_FFPP_PAIR = re.compile(r"^(.*?)(\d{3,})_(\d{3,})$")
_FFPP_ID = re.compile(r"^(.*?)(\d{3,})$")

VIDEO_COLUMNS = [
    "video_id", "path", "relpath", "label", "label_id", "group", "split", "original", "sha256",
    "size_bytes", "frames", "fps", "width", "height", "duration_s", "note", "source",
]
REJECT_COLUMNS = ["path", "reason", "source"]


class MetadataError(ValueError):
    """The metadata file as a whole cannot be read; the message names the file and, where known, the line."""


class LabelError(ValueError):
    pass


@dataclass(frozen=True)
class Entry:
    """One labelled video as the metadata states it, before any checking."""

    file: str
    label: object
    original: str | None = None
    split: str | None = None
    source: str = ""


@dataclass(frozen=True)
class SplitParams:
    val: float = 0.15
    test: float = 0.15
    seed: int = 42
    use_given: bool = False


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
        lines = [f"accepted {len(self.videos)} videos, rejected {len(self.rejects)} entries (metadata: {self.metadata})"]
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


# ---------------------------------------------------------------- labels


def normalize_label(value: object) -> str:
    """Map the many spellings of a label to REAL or FAKE; raise LabelError for anything else."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        raise LabelError("missing label")
    if isinstance(value, bool):
        text = str(value)
    elif isinstance(value, (int, float)) and float(value).is_integer():
        text = str(int(value))
    else:
        text = str(value)
    key = text.strip().lower()
    if key in LABEL_ALIASES:
        return LABEL_ALIASES[key]
    if not key:
        raise LabelError("missing label")
    raise LabelError(f"unknown label {text!r} (expected REAL/FAKE, real/fake, 0/1 or true/false meaning fake)")


def normalize_split(value: object) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or not str(value).strip():
        return None
    key = str(value).strip().lower()
    if key not in SPLIT_ALIASES:
        raise ValueError(f"unknown split {value!r} (expected train, val or test)")
    return SPLIT_ALIASES[key]


# ---------------------------------------------------------------- metadata


def find_metadata(root: Path, metadata: str | None) -> Path | None:
    """The metadata file to use: the one asked for, else metadata.json/.csv in root, else None (folders)."""
    if metadata and metadata != "auto":
        path = Path(metadata) if Path(metadata).is_absolute() else root / metadata
        if not path.is_file():
            raise MetadataError(f"{path}: metadata file not found")
        return path
    for name in METADATA_CANDIDATES:
        if (root / name).is_file():
            return root / name
    return None


def read_metadata(path: Path) -> list[Entry]:
    """Entries of a DFDC-style metadata.json, or of a CSV with columns path,label[,original][,split]."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise MetadataError(f"{path}, line {line}: not a text file (byte {error.start} is not UTF-8)") from None
    if not text.strip():
        raise MetadataError(f"{path}, line 1: metadata file is empty")
    looks_json = path.suffix.lower() == ".json" or text.lstrip()[:1] in ("{", "[")
    return _read_json(path, text) if looks_json else _read_csv(path, text)


def _read_json(path: Path, text: str) -> list[Entry]:
    # Keep every (key, value) pair: json.loads would let a duplicated file name silently overwrite the first.
    try:
        document = json.loads(text, object_pairs_hook=_Pairs)
    except json.JSONDecodeError as error:
        raise MetadataError(f"{path}, line {error.lineno} column {error.colno}: not valid JSON ({error.msg})") from None
    if isinstance(document, _Pairs):  # DFDC: {"file.mp4": {"label": ..., "original": ..., "split": ...}}
        items = [(key, value) for key, value in document]
    elif isinstance(document, list):  # [{"path": ..., "label": ...}, ...]
        items = []
        for position, value in enumerate(document):
            fields = {k.lower(): v for k, v in value} if isinstance(value, _Pairs) else {}
            items.append((str(fields.get("path", fields.get("file", f"<item {position}>"))), value))
    else:
        raise MetadataError(f"{path}, line 1: expected a JSON object mapping file names to entries")
    entries = []
    for key, value in items:
        fields = {k.lower(): v for k, v in value} if isinstance(value, _Pairs) else None
        source = f"{path.name} entry {key!r}"
        if fields is None:
            entries.append(Entry(file=key, label=None, source=source + " (not an object)"))
            continue
        entries.append(
            Entry(file=key, label=fields.get("label"), original=_text_or_none(fields.get("original")),
                  split=_text_or_none(fields.get("split")), source=source)
        )
    return entries


class _Pairs(list):
    """A JSON object kept as its list of (key, value) pairs."""


def _read_csv(path: Path, text: str) -> list[Entry]:
    import io

    try:
        table = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, skipinitialspace=True)
    except pd.errors.ParserError as error:
        line = re.search(r"line (\d+)", str(error))
        where = f", line {line.group(1)}" if line else ""
        raise MetadataError(f"{path}{where}: not a valid CSV ({str(error).strip()})") from None
    except pd.errors.EmptyDataError:
        raise MetadataError(f"{path}, line 1: metadata file has no header") from None
    table.columns = [str(c).strip().lower() for c in table.columns]
    file_column = next((c for c in ("path", "file", "filename", "video") if c in table.columns), None)
    if file_column is None or "label" not in table.columns:
        raise MetadataError(
            f"{path}, line 1: expected a CSV header with 'path' and 'label' columns "
            f"(optional 'original', 'split'); found {list(table.columns)}"
        )
    entries = []
    for row_number, row in enumerate(table.to_dict("records")):
        entries.append(
            Entry(file=row[file_column].strip(), label=row["label"],
                  original=_text_or_none(row.get("original")), split=_text_or_none(row.get("split")),
                  source=f"{path.name} line {row_number + 2}")
        )
    return entries


def _text_or_none(value: object) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return text or None


def folder_entries(root: Path, video_files: Iterable[str]) -> list[Entry]:
    """Labels from the first path component: real/... is REAL, fake/... is FAKE (any case)."""
    entries = []
    for relpath in video_files:
        top = relpath.split("/", 1)[0].lower()
        if "/" in relpath and top in FOLDER_LABELS:
            entries.append(Entry(file=relpath, label=FOLDER_LABELS[top], source=f"folder {relpath.split('/', 1)[0]}/"))
    return entries


def list_video_files(root: Path) -> list[str]:
    """Video files under root as sorted POSIX paths relative to it (hidden folders skipped)."""
    found = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        for name in files:
            path = Path(folder) / name
            if is_video_file(path) and not name.startswith("."):
                found.append(path.relative_to(root).as_posix())
    return sorted(found)


# ---------------------------------------------------------------- grouping and splitting


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, item: str) -> str:
        self.parent.setdefault(item, item)
        while self.parent[item] != item:
            self.parent[item] = self.parent[self.parent[item]]
            item = self.parent[item]
        return item

    def union(self, a: str, b: str) -> None:
        self.parent[self.find(a)] = self.find(b)


def assign_groups(videos: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Group each video with the videos it shares faces with.

    A fake joins its `original`. FaceForensics++-style names link too: `<prefix><a>_<b>` joins
    `<prefix><a>`, `<prefix><b>` and `<prefix><b>_<a>` (the swap the other way round, which carries the
    same two faces). An `original` missing from the dataset still groups the fakes made from it.
    Returns the group of each row (named after a REAL member where there is one) and a note per row.
    """
    relpaths = list(videos["relpath"])
    by_name = {**{Path(p).name: p for p in relpaths}, **{p: p for p in relpaths}}
    ffpp_names: dict[tuple, list[str]] = defaultdict(list)
    for relpath in relpaths:
        stem = Path(relpath).stem
        if match := _FFPP_PAIR.match(stem):
            prefix, first, second = match.groups()
            ffpp_names[(prefix, frozenset((first, second)))].append(relpath)
        elif match := _FFPP_ID.match(stem):
            ffpp_names[match.groups()].append(relpath)

    links = _UnionFind()
    notes = pd.Series("", index=videos.index, dtype=object)
    for index, relpath, original in zip(videos.index, relpaths, videos["original"]):
        links.find(relpath)
        if isinstance(original, str) and original:
            target = by_name.get(original) or by_name.get(Path(original).name)
            if target is None:
                notes[index] = f"original {original!r} is not among the accepted videos; grouped by that name"
                target = f"original:{Path(original).name}"
            links.union(relpath, target)
        if match := _FFPP_PAIR.match(Path(relpath).stem):
            prefix, first, second = match.groups()
            for key in ((prefix, first), (prefix, second), (prefix, frozenset((first, second)))):
                for partner in ffpp_names.get(key, []):
                    links.union(relpath, partner)

    members = defaultdict(list)
    for relpath, label in zip(relpaths, videos["label"]):
        members[links.find(relpath)].append((label != "REAL", relpath))
    names = {root: min(items)[1] for root, items in members.items()}
    groups = videos["relpath"].map(lambda p: names[links.find(p)])
    return groups, notes


def split_by_group(labels: np.ndarray, groups: np.ndarray, *, val: float, test: float, seed: int) -> np.ndarray:
    """Assign train/val/test so that each group lies in one split, stratified by label.

    Among the folds scikit-learn's StratifiedGroupKFold proposes, the held-out part is the one that leaves
    both labels on each side where possible, then the one closest to the asked size.
    """
    if not 0 <= val < 1 or not 0 <= test < 1 or val + test >= 1:
        raise ValueError(f"split ratios must satisfy 0 <= val, test and val + test < 1 (val={val}, test={test})")
    labels = np.asarray(labels)
    groups = np.asarray(groups)
    split = np.full(len(labels), "train", dtype=object)
    remaining = np.arange(len(labels))
    for name, ratio in (("test", test), ("val", val / (1 - test))):
        if ratio <= 0 or len(remaining) == 0:
            continue
        held_out = _held_out_fold(labels[remaining], groups[remaining], ratio, seed)
        split[remaining[held_out]] = name
        remaining = remaining[~held_out]
    return split


def _held_out_fold(labels: np.ndarray, groups: np.ndarray, ratio: float, seed: int) -> np.ndarray:
    mask = np.zeros(len(labels), dtype=bool)
    if len(np.unique(groups)) < 2:
        return mask
    classes, class_sizes = np.unique(labels, return_counts=True)
    target = ratio * len(labels)
    target_splits = max(2, round(1 / ratio))
    # Candidates: folds at the asked size and up to twice it (bigger folds hold several groups, so they can
    # hold both labels when groups are few), over a few shuffles; and holding nothing out, for sets so small
    # that any hold-out would leave training without one of the labels.
    candidates = [np.array([], dtype=int)]
    for n_splits in range(target_splits, max(2, target_splits // 2) - 1, -1):
        n_splits = min(n_splits, len(np.unique(groups)), class_sizes.max())
        if n_splits < 2:
            continue
        for repeat in range(3):
            folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed + repeat)
            with warnings.catch_warnings():  # "least populated class has fewer members than n_splits": expected
                warnings.simplefilter("ignore", UserWarning)
                candidates += [held for _, held in folds.split(np.zeros(len(labels)), labels, groups)]

    def badness(held: np.ndarray) -> tuple:
        rest = np.delete(labels, held)
        return (len(np.unique(rest)) < len(classes), len(np.unique(labels[held])) < len(classes),
                abs(len(held) - target))

    mask[min(candidates, key=badness)] = True
    return mask


# ---------------------------------------------------------------- the dataset step


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
            why = (f"video not listed in {metadata_path.name}; add it with a label to use it" if metadata_path
                   else "video not under real/ or fake/; move it there to use it")
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
        rows.append({
            "video_id": video_id(relpath, digest), "path": (root / relpath).as_posix(), "relpath": relpath,
            "label": label, "label_id": LABEL_IDS[label], "original": entry.original or "",
            "given_split": given_split, "sha256": digest, "size_bytes": (root / relpath).stat().st_size,
            "frames": info.frames, "fps": round(info.fps, 3), "width": info.width, "height": info.height,
            "duration_s": round(info.duration_s, 3), "source": entry.source,
            "probe_note": (f"header promises {info.header_frames} frames, {info.frames} decode"
                           if info.header_frames > info.frames else ""),
        })

    videos = pd.DataFrame(rows, columns=[*VIDEO_COLUMNS, "given_split", "probe_note"])
    warnings: list[str] = []
    if len(videos):
        videos["group"], group_notes = assign_groups(videos)
        videos["note"] = (videos["probe_note"] + "; " + group_notes).str.strip("; ")
        videos, conflicts = _apply_split(videos, split)
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
        return None, f"ambiguous: {len(matches)} videos under the root are named {Path(file).name!r} ({', '.join(matches)})"
    return None, "file listed in metadata not found under the dataset root"


def _apply_split(videos: pd.DataFrame, params: SplitParams) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fill the split column; with `use_given`, groups whose given splits disagree are taken out."""
    videos = videos.copy()
    videos["split"] = videos["given_split"]
    conflicts = pd.DataFrame(columns=["relpath", "reason", "source"])
    if params.use_given:
        per_group = videos.dropna(subset=["given_split"]).groupby("group")["given_split"].agg(lambda s: sorted(set(s)))
        spanning = per_group[per_group.map(len) > 1]
        bad = videos["group"].isin(spanning.index)
        if bad.any():
            conflicts = videos.loc[bad, ["relpath", "source"]].assign(
                reason=videos.loc[bad, "group"].map(
                    lambda g: f"group {g!r} is given splits {', '.join(spanning[g])}: a fake and its original "
                    "must share one split; fix the split column"
                )
            )
            videos = videos.loc[~bad].copy()
        # A group with a given split anywhere takes it everywhere.
        given = per_group.drop(spanning.index).map(lambda s: s[0])
        videos["split"] = videos["group"].map(given).astype(object)
    todo = videos["split"].isna()
    if todo.any():
        videos.loc[todo, "split"] = split_by_group(
            videos.loc[todo, "label_id"].to_numpy(), videos.loc[todo, "group"].to_numpy(),
            val=params.val, test=params.test, seed=params.seed,
        )
    return videos, conflicts


def video_id(relpath: str, digest: str) -> str:
    """A file-system-safe, readable id: the ASCII-folded file stem plus the start of the content hash."""
    stem = unicodedata.normalize("NFKD", Path(relpath).stem).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._-")[:60] or "video"
    return f"{slug}-{digest[:8]}"
