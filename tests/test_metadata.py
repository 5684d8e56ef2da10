"""Reading metadata and normalising labels and splits: fast unit tests, no videos."""

from __future__ import annotations

import re

import pytest

from deepfake.data.metadata import Entry, normalize_label, normalize_split, read_metadata
from deepfake.errors import LabelError, MetadataError

# ---------------------------------------------------------------- normalize_label


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("REAL", "REAL"),
        ("FAKE", "FAKE"),
        ("real", "REAL"),
        ("fake", "FAKE"),
        (" Fake ", "FAKE"),
        ("\tREAL\n", "REAL"),
        ("0", "REAL"),
        ("1", "FAKE"),
        (" 1 ", "FAKE"),
        ("true", "FAKE"),
        ("True", "FAKE"),
        ("False", "REAL"),
        ("false", "REAL"),
        (0, "REAL"),
        (1, "FAKE"),
        (True, "FAKE"),
        (False, "REAL"),
        (0.0, "REAL"),
        (1.0, "FAKE"),
        ("original", "REAL"),
        ("Deepfake", "FAKE"),
    ],
)
def test_normalize_label_accepts_spellings(value, expected):
    assert normalize_label(value) == expected


@pytest.mark.parametrize("value", ["MAYBE", "maybe-fake", "2", 2, 0.5, -1, "REALFAKE"])
def test_normalize_label_rejects_unknown_value_naming_it(value):
    with pytest.raises(LabelError) as info:
        normalize_label(value)
    message = str(info.value)
    assert repr(str(value)) in message, message
    assert "unknown label" in message


@pytest.mark.parametrize("value", ["", "   ", None, float("nan")], ids=["empty", "blank", "None", "NaN"])
def test_normalize_label_rejects_missing_value(value):
    with pytest.raises(LabelError, match="missing label"):
        normalize_label(value)


def test_label_error_is_a_value_error():
    # build_dataset catches ValueError to turn bad labels into rejects.
    assert issubclass(LabelError, ValueError)


# ---------------------------------------------------------------- normalize_split


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("train", "train"),
        ("Training", "train"),
        (" TRAIN ", "train"),
        ("val", "val"),
        ("valid", "val"),
        ("Validation", "val"),
        ("dev", "val"),
        ("test", "test"),
        ("testing", "test"),
        ("holdout", "test"),
        (None, None),
        ("", None),
        ("  ", None),
        (float("nan"), None),
    ],
)
def test_normalize_split_aliases(value, expected):
    assert normalize_split(value) == expected


@pytest.mark.parametrize("value", ["bogus", "trainval", "eval2"])
def test_normalize_split_unknown_value(value):
    with pytest.raises(ValueError, match=re.escape(repr(value))) as info:
        normalize_split(value)
    assert "unknown split" in str(info.value)


# ---------------------------------------------------------------- read_metadata: formats that work


def _write(tmp_path, name, content):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def test_read_dfdc_json(tmp_path):
    path = _write(
        tmp_path,
        "metadata.json",
        """{
          "aaa.mp4": {"label": "REAL", "original": null, "split": "train"},
          "bbb.mp4": {"label": "FAKE", "original": "aaa.mp4", "split": "test"},
          "ccc.mp4": {"Label": "fake", "Original": "zzz.mp4"}
        }""",
    )
    entries = read_metadata(path)
    assert [(e.file, e.label, e.original, e.split) for e in entries] == [
        ("aaa.mp4", "REAL", None, "train"),
        ("bbb.mp4", "FAKE", "aaa.mp4", "test"),
        ("ccc.mp4", "fake", "zzz.mp4", None),
    ]
    assert all(isinstance(e, Entry) for e in entries)
    assert entries[1].source == "metadata.json entry 'bbb.mp4'"


def test_read_json_list_of_objects(tmp_path):
    path = _write(
        tmp_path,
        "meta.json",
        '[{"path": "v/x.mp4", "label": "FAKE", "original": "v/y.mp4", "split": "val"},'
        ' {"path": "v/y.mp4", "label": 0},'
        ' {"file": "v/z.mp4", "label": true}]',
    )
    entries = read_metadata(path)
    assert [(e.file, e.label, e.original, e.split) for e in entries] == [
        ("v/x.mp4", "FAKE", "v/y.mp4", "val"),
        ("v/y.mp4", 0, None, None),
        ("v/z.mp4", True, None, None),
    ]


def test_read_json_list_entry_without_path_is_kept_as_nameless(tmp_path):
    path = _write(tmp_path, "meta.json", '[{"label": "REAL"}, "not an object"]')
    entries = read_metadata(path)
    assert [e.file for e in entries] == ["<item 0>", "<item 1>"]
    assert entries[1].label is None and "not an object" in entries[1].source


def test_read_csv(tmp_path):
    path = _write(
        tmp_path,
        "metadata.csv",
        "path,label,original,split\nreal/a.mp4,REAL,,train\nfake/b.mp4,FAKE,real/a.mp4,test\nfake/c d.mp4, 1 ,,\n",
    )
    entries = read_metadata(path)
    assert [(e.file, normalize_label(e.label), e.original, e.split) for e in entries] == [
        ("real/a.mp4", "REAL", None, "train"),
        ("fake/b.mp4", "FAKE", "real/a.mp4", "test"),
        ("fake/c d.mp4", "FAKE", None, None),
    ]
    assert [e.source for e in entries] == ["metadata.csv line 2", "metadata.csv line 3", "metadata.csv line 4"]


def test_read_csv_with_file_column(tmp_path):
    path = _write(tmp_path, "labels.csv", "File,Label\nclip one.mp4,real\nclip2.mp4,fake\n")
    entries = read_metadata(path)
    assert [(e.file, e.label, e.original, e.split) for e in entries] == [
        ("clip one.mp4", "real", None, None),
        ("clip2.mp4", "fake", None, None),
    ]


def test_read_csv_with_bom(tmp_path):
    path = _write(tmp_path, "metadata.csv", b"\xef\xbb\xbfpath,label\r\na.mp4,REAL\r\nb.mp4,FAKE\r\n")
    entries = read_metadata(path)
    assert [(e.file, e.label) for e in entries] == [("a.mp4", "REAL"), ("b.mp4", "FAKE")]


def test_read_json_with_bom(tmp_path):
    path = _write(tmp_path, "metadata.json", '\ufeff{"a.mp4": {"label": "REAL"}}')
    assert [(e.file, e.label) for e in read_metadata(path)] == [("a.mp4", "REAL")]


def test_read_non_ascii_names(tmp_path):
    path = _write(tmp_path, "metadata.csv", "path,label\nvidéo réelle 1.mp4,REAL\n日本.mp4,FAKE\n")
    assert [e.file for e in read_metadata(path)] == ["vidéo réelle 1.mp4", "日本.mp4"]


def test_read_json_duplicated_key_keeps_both(tmp_path):
    path = _write(
        tmp_path,
        "metadata.json",
        '{"a.mp4": {"label": "REAL"}, "b.mp4": {"label": "REAL"}, "a.mp4": {"label": "FAKE", "original": "b.mp4"}}',
    )
    entries = read_metadata(path)
    assert [(e.file, e.label, e.original) for e in entries] == [
        ("a.mp4", "REAL", None),
        ("b.mp4", "REAL", None),
        ("a.mp4", "FAKE", "b.mp4"),
    ]


# ---------------------------------------------------------------- read_metadata: files that cannot be read


def _error(path) -> str:
    with pytest.raises(MetadataError) as info:
        read_metadata(path)
    return str(info.value)


def test_metadata_error_is_a_value_error():
    assert issubclass(MetadataError, ValueError)


def test_broken_json_names_file_and_line(tmp_path):
    path = _write(
        tmp_path,
        "metadata.json",
        '{\n  "a.mp4": {"label": "REAL"},\n  "b.mp4": {"label": "FAKE"}\n  "c.mp4": {"label": "FAKE"}\n}\n',
    )
    message = _error(path)
    assert str(path) in message
    assert re.search(r"\bline 4\b", message), message
    assert "not valid JSON" in message


def test_broken_json_trailing_comma_line(tmp_path):
    path = _write(tmp_path, "metadata.json", '{\n "a.mp4": {"label": "REAL"},\n\n "b.mp4": {"label": "FAKE",}\n}\n')
    message = _error(path)
    assert str(path) in message and re.search(r"\bline 4\b", message), message


@pytest.mark.parametrize("name", ["metadata.csv", "metadata.json"])
def test_png_bytes_name_file_and_line(tmp_path, name):
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10\x00\x00\x00\x10\x08\x02\x00\x00\x00\x90\x91h6"
    path = _write(tmp_path, name, png)
    message = _error(path)
    assert str(path) in message
    assert re.search(r"\bline 1\b", message), message
    assert "not a text file" in message


def test_binary_after_text_lines_names_that_line(tmp_path):
    path = _write(tmp_path, "metadata.csv", b"path,label\na.mp4,REAL\nb\xff\xfe.mp4,FAKE\n")
    message = _error(path)
    assert str(path) in message and re.search(r"\bline 3\b", message), message


@pytest.mark.parametrize(
    "prose",
    [
        "These are my videos.\nThe fake ones are in the other folder, I think, maybe.\n",
        "Hello, this is a note about the data, not a table.\nIt has no header.\n",
        "just one line of notes\n",
    ],
)
def test_prose_named_metadata_csv(tmp_path, prose):
    path = _write(tmp_path, "metadata.csv", prose)
    message = _error(path)
    assert str(path) in message
    assert re.search(r"\bline 1\b", message), message
    assert "'path' and 'label'" in message


@pytest.mark.parametrize("content", ["", "   \n\n", "\ufeff"], ids=["empty", "blank", "bom-only"])
@pytest.mark.parametrize("name", ["metadata.csv", "metadata.json"])
def test_empty_metadata(tmp_path, name, content):
    path = _write(tmp_path, name, content)
    message = _error(path)
    assert str(path) in message and "line 1" in message and "empty" in message


def test_csv_missing_label_column(tmp_path):
    path = _write(tmp_path, "metadata.csv", "path,original,split\na.mp4,,train\n")
    message = _error(path)
    assert str(path) in message and "line 1" in message
    assert "'label'" in message and "['path', 'original', 'split']" in message


def test_csv_missing_path_column(tmp_path):
    path = _write(tmp_path, "metadata.csv", "name,label\na.mp4,REAL\n")
    message = _error(path)
    assert str(path) in message and "line 1" in message and "['name', 'label']" in message


def test_csv_ragged_row_names_line(tmp_path):
    path = _write(tmp_path, "metadata.csv", "path,label\na.mp4,REAL\nb.mp4,FAKE\nc.mp4,FAKE,x,y,z\n")
    message = _error(path)
    assert str(path) in message and re.search(r"\bline 4\b", message), message


def test_json_scalar_document(tmp_path):
    path = _write(tmp_path, "metadata.json", "42\n")
    message = _error(path)
    assert str(path) in message and "line 1" in message and "JSON object" in message
