"""Reading labelled-media metadata: DFDC metadata.json, a metadata CSV, or real/ and fake/ folders.

Media are videos and face photos (a photo is a one-frame video to the rest of the pipeline). Labels are
cleaned to REAL or FAKE and splits to train/val/test; a file that cannot be read at all raises
MetadataError naming the file and, where known, the line.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from deepfake.errors import LabelError, MetadataError
from deepfake.video.probe import is_media_file

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


@dataclass(frozen=True)
class Entry:
    """One labelled video as the metadata states it, before any checking."""

    file: str
    label: object
    original: str | None = None
    split: str | None = None
    source: str = ""
    group: str | None = None  # files sharing a group (e.g. photos of one identity) never straddle splits


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


def read_metadata(path: Path, label: str = "") -> list[Entry]:
    """Entries of a DFDC-style metadata.json, or of a CSV with columns path,label[,original][,split][,group].

    `label` is the label of every entry that gives none (a CSV may then omit the label column): a folder of
    real face photos with its own list of files and identities needs no label per row.
    """
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise MetadataError(f"{path}, line {line}: not a text file (byte {error.start} is not UTF-8)") from None
    if not text.strip():
        raise MetadataError(f"{path}, line 1: metadata file is empty")
    looks_json = path.suffix.lower() == ".json" or text.lstrip()[:1] in ("{", "[")
    entries = _read_json(path, text) if looks_json else _read_csv(path, text, label)
    if label:
        entries = [entry if _given(entry.label) else dataclasses.replace(entry, label=label) for entry in entries]
    return entries


def _given(value: object) -> bool:
    return _text_or_none(value) is not None


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
            Entry(
                file=key,
                label=fields.get("label"),
                original=_text_or_none(fields.get("original")),
                split=_text_or_none(fields.get("split")),
                source=source,
                group=_text_or_none(fields.get("group", fields.get("identity"))),
            )
        )
    return entries


class _Pairs(list):
    """A JSON object kept as its list of (key, value) pairs."""


def _read_csv(path: Path, text: str, label: str = "") -> list[Entry]:
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
    if file_column is None or ("label" not in table.columns and not label):
        raise MetadataError(
            f"{path}, line 1: expected a CSV header with 'path' and 'label' columns "
            f"(optional 'original', 'split', 'group' or 'identity'); found {list(table.columns)}"
        )
    group_column = next((c for c in ("group", "identity") if c in table.columns), None)
    entries = []
    for row_number, row in enumerate(table.to_dict("records")):
        entries.append(
            Entry(
                file=row[file_column].strip(),
                label=row.get("label"),
                original=_text_or_none(row.get("original")),
                split=_text_or_none(row.get("split")),
                source=f"{path.name} line {row_number + 2}",
                group=_text_or_none(row.get(group_column)) if group_column else None,
            )
        )
    return entries


def _text_or_none(value: object) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return text or None


def folder_entries(root: Path, media_files: Iterable[str]) -> list[Entry]:
    """Labels from the first path component: real/... is REAL, fake/... is FAKE (any case)."""
    entries = []
    for relpath in media_files:
        top = relpath.split("/", 1)[0].lower()
        if "/" in relpath and top in FOLDER_LABELS:
            entries.append(Entry(file=relpath, label=FOLDER_LABELS[top], source=f"folder {relpath.split('/', 1)[0]}/"))
    return entries


def list_media_files(root: Path) -> list[str]:
    """Video and photo files under root as sorted POSIX paths relative to it (hidden folders skipped)."""
    found = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        for name in files:
            path = Path(folder) / name
            if is_media_file(path) and not name.startswith("."):
                found.append(path.relative_to(root).as_posix())
    return sorted(found)
