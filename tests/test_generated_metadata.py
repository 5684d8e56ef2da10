"""Fuzzed metadata and labels (hypothesis): JSON, CSV and folder layouts with wrong types, missing and extra
columns, BOMs, other encodings and path tricks (`..`, absolute paths, symlinks out of the root).

The properties: a MetadataError naming the file (and line), or a Dataset whose every accepted video lies
inside the root and whose every reject has a reason; never another exception, never a read outside the root.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
import shutil
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from deepfake.data.dataset import build_dataset
from deepfake.errors import MetadataError
from tests.conftest import examples, make_clip

counter = itertools.count()
NAMES = [
    "a.mp4",
    "b.mp4",
    "real/c.mp4",
    "fake/d.mp4",
    "../outside.mp4",
    "link.mp4",
    "missing.mp4",
    "",
    " a.mp4 ",
    "A.MP4",
    "sub/../a.mp4",
    "ñandú.mp4",
    "a.mp4\x00",
    "real",
    ".",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.floats(allow_nan=True),
    st.text(max_size=8),
    st.sampled_from(["REAL", "FAKE", "fake ", "Real", "0", "1", "true", "train", "test", "val", "x"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
names = st.one_of(st.sampled_from(NAMES), st.text(max_size=12))
entry = st.one_of(
    values,
    st.fixed_dictionaries(
        {}, optional={"label": values, "original": st.one_of(names, values), "split": values, "extra": values}
    ),
)
json_documents = st.one_of(
    st.dictionaries(names, entry, max_size=6),
    st.lists(
        st.fixed_dictionaries({}, optional={"path": st.one_of(names, values), "label": values, "file": names}),
        max_size=5,
    ),
    values,
)
ENCODINGS = ["utf-8", "utf-8-sig", "utf-16", "latin-1"]


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    """A folder holding the root's clips: a.mp4, b.mp4, real/c.mp4, fake/d.mp4, and outside.mp4."""
    folder = tmp_path_factory.mktemp("clips")
    for number, name in enumerate(["a.mp4", "b.mp4", "real/c.mp4", "fake/d.mp4", "outside.mp4"]):
        make_clip(folder / name, frames=3, seed=number)
    return folder


def dataset_root(tmp_path: Path, clips: Path) -> Path:
    work = tmp_path / f"example{next(counter)}"
    root = work / "root"
    shutil.copytree(clips, root)
    os.replace(root / "outside.mp4", work / "outside.mp4")  # a valid clip outside the root
    (root / "link.mp4").symlink_to(work / "outside.mp4")
    (root / "real" / "link-out.mp4").symlink_to(work / "outside.mp4")
    return root


def check(root: Path, metadata: Path | None) -> None:
    try:
        dataset = build_dataset(root)
    except MetadataError as error:
        assert metadata is not None and str(metadata) in str(error)
        return
    inside = root.resolve()
    for path in dataset.videos["path"]:
        assert Path(path).resolve().is_relative_to(inside), f"read outside the root: {path}"
    assert (dataset.rejects["reason"].str.len() > 0).all()
    for row in dataset.rejects.itertuples():
        assert row.path is not None


@examples(40)
@given(document=json_documents, encoding=st.sampled_from(ENCODINGS))
def test_fuzzed_json_metadata_is_read_or_refused_with_the_file_named(document, encoding, clips, tmp_path):
    root = dataset_root(tmp_path, clips)
    metadata = root / "metadata.json"
    metadata.write_bytes(json.dumps(document, ensure_ascii=False, allow_nan=True).encode(encoding, "replace"))
    check(root, metadata)


columns = st.lists(
    st.sampled_from(["path", "label", "original", "split", "file", "extra", "", "Label", "path"]),
    min_size=0,
    max_size=5,
)
cells = st.one_of(names, st.sampled_from(["REAL", "FAKE", "2", "", "train", '"', ",", "\n", "é"]), st.text(max_size=6))


@examples(40)
@given(header=columns, rows=st.lists(st.lists(cells, max_size=6), max_size=6), encoding=st.sampled_from(ENCODINGS))
def test_fuzzed_csv_metadata_is_read_or_refused_with_the_file_named(header, rows, encoding, clips, tmp_path):
    root = dataset_root(tmp_path, clips)
    metadata = root / "metadata.csv"
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(header)
    writer.writerows(rows)
    metadata.write_bytes(text.getvalue().encode(encoding, "replace"))
    check(root, metadata)


def test_folder_layout_never_reads_through_a_symlink_out_of_the_root(clips, tmp_path):
    root = dataset_root(tmp_path, clips)
    dataset = build_dataset(root)
    assert not any("link-out" in p for p in dataset.videos["path"])
    assert any("link-out" in p for p in dataset.rejects["path"])
    check(root, None)
