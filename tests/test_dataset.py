"""The dataset step end to end on tiny clips: every bad input ends in the rejects table with its reason,
nothing is lost, groups keep fakes with their originals and splits never cut a group."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from deepfake.config import SplitParams
from deepfake.data.dataset import REJECT_COLUMNS, SPLITS, VIDEO_COLUMNS, Dataset, build_dataset
from deepfake.data.split import split_by_group
from deepfake.errors import MetadataError
from deepfake.video.probe import VIDEO_EXTENSIONS

# Splitting is tested on its own below; tests about other things keep everything in train so their
# assertions do not depend on where the split puts a handful of videos.
ALL_TRAIN = SplitParams(val=0.0, test=0.0)


# ---------------------------------------------------------------- helpers


def assert_every_input_once(dataset: Dataset, root: Path) -> None:
    """Every video file under root is accepted exactly once or rejected (several times only for duplicates)."""
    root = Path(root)
    on_disk = sorted(
        p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS
    )
    accepted = list(dataset.videos["relpath"])
    rejected = Counter(dataset.rejects["path"])
    twice = [p for p, n in Counter(accepted).items() if n > 1]
    assert not twice, f"accepted more than once: {twice}"
    both = sorted(set(accepted) & set(rejected))
    assert not both, f"both accepted and rejected: {both}"
    lost = [p for p in on_disk if p not in accepted and p not in rejected]
    assert not lost, f"in neither table: {lost}"
    not_there = [p for p in accepted if p not in on_disk]
    assert not not_there, f"accepted but not a file under the root: {not_there}"
    for relpath, path in zip(dataset.videos["relpath"], dataset.videos["path"]):
        assert path == (root / relpath).as_posix()


def reasons(dataset: Dataset, path: str) -> list[str]:
    return list(dataset.rejects.loc[dataset.rejects["path"] == path, "reason"])


def assert_rejected(dataset: Dataset, path: str, *substrings: str, times: int = 1) -> None:
    found = reasons(dataset, path)
    assert len(found) == times, f"{path}: expected {times} reject row(s), got {found}; rejects:\n{dataset.rejects}"
    for reason in found:
        for substring in substrings:
            assert substring in reason, f"{path}: {substring!r} not in reason {reason!r}"


def accepted(dataset: Dataset) -> list[str]:
    return sorted(dataset.videos["relpath"])


def write_csv_metadata(root: Path, rows: list[tuple], header: str = "path,label") -> Path:
    path = root / "metadata.csv"
    lines = [header] + [",".join("" if v is None else str(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_json_metadata(root: Path, text: str) -> Path:
    path = root / "metadata.json"
    path.write_text(text, encoding="utf-8")
    return path


def run_ffmpeg(ffmpeg: str, *args: str) -> None:
    subprocess.run([ffmpeg, "-v", "error", "-y", *map(str, args)], check=True, capture_output=True, timeout=60)


# ---------------------------------------------------------------- bad inputs, one each


def test_zero_byte_file(tmp_path, clip_factory):
    clip_factory("good.mp4")
    (tmp_path / "empty.mp4").write_bytes(b"")
    write_csv_metadata(tmp_path, [("good.mp4", "REAL"), ("empty.mp4", "REAL")])
    ds = build_dataset(tmp_path)
    assert accepted(ds) == ["good.mp4"]
    assert_rejected(ds, "empty.mp4", "empty file (0 bytes)")
    assert len(ds.rejects) == 1
    assert_every_input_once(ds, tmp_path)


def test_truncated_opencv_mp4(tmp_path, clip_factory):
    clip_factory("good.mp4")
    cut = clip_factory("cut.mp4", frames=20)
    data = cut.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    write_csv_metadata(tmp_path, [("good.mp4", "REAL"), ("cut.mp4", "FAKE")])
    ds = build_dataset(tmp_path)
    assert accepted(ds) == ["good.mp4"]
    assert_rejected(ds, "cut.mp4", "not a readable video")
    assert_every_input_once(ds, tmp_path)


def test_truncated_faststart_h264(tmp_path, clip_factory, ffmpeg):
    source = clip_factory("source.mp4", frames=40)
    run_ffmpeg(ffmpeg, "-i", source, "-c:v", "libx264", "-movflags", "+faststart", tmp_path / "full.mp4")
    source.unlink()
    data = (tmp_path / "full.mp4").read_bytes()
    assert data[4:8] == b"ftyp" and data.find(b"moov") < data.find(b"mdat"), "ffmpeg did not write a faststart mp4"
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    write_csv_metadata(tmp_path, [("full.mp4", "REAL"), ("cut.mp4", "REAL")])
    ds = build_dataset(tmp_path)
    # The whole file is fine (so H.264 decodes at all); the cut one keeps its index but not its frames.
    assert accepted(ds) == ["full.mp4"]
    assert ds.videos.loc[0, "frames"] == 40
    assert_rejected(ds, "cut.mp4", "truncated", "header promises 40 frames")
    assert_every_input_once(ds, tmp_path)


def test_text_file_named_mp4(tmp_path, clip_factory):
    clip_factory("good.mp4")
    (tmp_path / "notes.mp4").write_text("this is not a video, just some notes\n" * 20)
    write_csv_metadata(tmp_path, [("good.mp4", "REAL"), ("notes.mp4", "REAL")])
    ds = build_dataset(tmp_path)
    assert accepted(ds) == ["good.mp4"]
    assert_rejected(ds, "notes.mp4", "not a readable video")
    assert_every_input_once(ds, tmp_path)


def test_audio_only_mp4(tmp_path, clip_factory, ffmpeg):
    clip_factory("good.mp4")
    run_ffmpeg(ffmpeg, "-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-c:a", "aac", tmp_path / "audio.mp4")
    assert (tmp_path / "audio.mp4").stat().st_size > 0
    write_csv_metadata(tmp_path, [("good.mp4", "REAL"), ("audio.mp4", "FAKE")])
    ds = build_dataset(tmp_path)
    assert accepted(ds) == ["good.mp4"]
    [reason] = reasons(ds, "audio.mp4")
    assert re.search(r"no video stream|not a readable video", reason), reason
    assert_every_input_once(ds, tmp_path)


def test_one_frame_video(tmp_path, clip_factory):
    clip_factory("good.mp4")
    clip_factory("single.mp4", frames=1)
    write_csv_metadata(tmp_path, [("good.mp4", "REAL"), ("single.mp4", "REAL")])
    ds = build_dataset(tmp_path, min_frames=2)
    assert accepted(ds) == ["good.mp4"]
    assert_rejected(ds, "single.mp4", "too few frames: 1", "at least 2")
    assert_every_input_once(ds, tmp_path)


def test_one_frame_video_accepted_when_one_frame_is_enough(tmp_path, clip_factory):
    clip_factory("single.mp4", frames=1)
    write_csv_metadata(tmp_path, [("single.mp4", "REAL")])
    ds = build_dataset(tmp_path, min_frames=1)
    assert accepted(ds) == ["single.mp4"]
    row = ds.videos.iloc[0]
    assert (row["frames"], row["duration_s"]) == (1, pytest.approx(0.1))


def test_listed_file_missing(tmp_path, clip_factory):
    clip_factory("good.mp4")
    write_csv_metadata(tmp_path, [("good.mp4", "REAL"), ("gone.mp4", "FAKE")])
    ds = build_dataset(tmp_path)
    assert accepted(ds) == ["good.mp4"]
    assert_rejected(ds, "gone.mp4", "not found")
    assert ds.rejects.loc[0, "source"] == "metadata.csv line 3"
    assert_every_input_once(ds, tmp_path)


def test_video_not_listed(tmp_path, clip_factory):
    clip_factory("good.mp4")
    clip_factory("extra.mp4")
    clip_factory("sub/deeper.mp4")
    write_csv_metadata(tmp_path, [("good.mp4", "REAL")])
    ds = build_dataset(tmp_path)
    assert accepted(ds) == ["good.mp4"]
    assert_rejected(ds, "extra.mp4", "not listed in metadata.csv")
    assert_rejected(ds, "sub/deeper.mp4", "not listed in metadata.csv")
    assert_every_input_once(ds, tmp_path)


def test_duplicate_csv_rows(tmp_path, clip_factory):
    clip_factory("good.mp4")
    clip_factory("twice.mp4")
    write_csv_metadata(tmp_path, [("twice.mp4", "REAL"), ("good.mp4", "REAL"), ("twice.mp4", "FAKE")])
    ds = build_dataset(tmp_path)
    assert accepted(ds) == ["good.mp4"]
    assert_rejected(ds, "twice.mp4", "duplicate", "listed 2 times", "line 2", "line 4", times=2)
    assert_every_input_once(ds, tmp_path)


def test_duplicate_json_keys(tmp_path, clip_factory):
    clip_factory("good.mp4")
    clip_factory("twice.mp4")
    write_json_metadata(
        tmp_path,
        '{"twice.mp4": {"label": "REAL"}, "good.mp4": {"label": "REAL"}, "twice.mp4": {"label": "REAL"}}',
    )
    ds = build_dataset(tmp_path)
    assert accepted(ds) == ["good.mp4"]
    assert_rejected(ds, "twice.mp4", "duplicate", "listed 2 times", times=2)
    assert_every_input_once(ds, tmp_path)


def test_same_file_listed_under_two_spellings_is_duplicate(tmp_path, clip_factory):
    clip_factory("good.mp4")
    clip_factory("sub/a.mp4")
    write_csv_metadata(tmp_path, [("good.mp4", "REAL"), ("sub/a.mp4", "REAL"), ("./sub/../sub/a.mp4", "REAL")])
    ds = build_dataset(tmp_path)
    assert accepted(ds) == ["good.mp4"]
    assert_rejected(ds, "sub/a.mp4", "duplicate", times=2)
    assert_every_input_once(ds, tmp_path)


def test_unknown_label(tmp_path, clip_factory):
    clip_factory("good.mp4")
    clip_factory("maybe.mp4")
    clip_factory("blank.mp4")
    write_csv_metadata(tmp_path, [("good.mp4", "REAL"), ("maybe.mp4", "MAYBE"), ("blank.mp4", "")])
    ds = build_dataset(tmp_path)
    assert accepted(ds) == ["good.mp4"]
    assert_rejected(ds, "maybe.mp4", "unknown label 'MAYBE'")
    assert_rejected(ds, "blank.mp4", "missing label")
    assert_every_input_once(ds, tmp_path)


@pytest.mark.parametrize(
    ("name", "content", "line"),
    [
        ("metadata.csv", "These are my videos.\nThe fake ones are in the other folder, I think.\n", 1),
        ("metadata.json", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10", 1),
        ("metadata.csv", b"path,label\ngood.mp4,REAL\n\x00\x9f\x92\x96binary\n", 3),
        ("metadata.json", '{\n  "good.mp4": {"label": "REAL"}\n  "x.mp4": {"label": "FAKE"}\n}\n', 3),
    ],
    ids=["prose-csv", "png-json", "binary-tail-csv", "broken-json"],
)
def test_unreadable_metadata_is_an_error_naming_file_and_line(tmp_path, clip_factory, name, content, line):
    clip_factory("good.mp4")
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(MetadataError) as info:
        build_dataset(tmp_path)
    message = str(info.value)
    assert str(path) in message
    assert re.search(rf"\bline {line}\b", message), message


def test_missing_named_metadata_file(tmp_path, clip_factory):
    clip_factory("good.mp4")
    with pytest.raises(MetadataError, match="labels.csv: metadata file not found"):
        build_dataset(tmp_path, "labels.csv")


def test_no_metadata_and_no_folders(tmp_path, clip_factory):
    clip_factory("loose.mp4")
    with pytest.raises(MetadataError, match="no metadata.json, no metadata.csv and no real/ or fake/ folders"):
        build_dataset(tmp_path)


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_spaces_and_non_ascii_names_accepted(tmp_path, clip_factory, fmt):
    names = ["vidéo réelle 1.mp4", "sub dir/clip two.mp4", "日本語.mp4"]
    for name in names:
        clip_factory(name)
    if fmt == "csv":
        write_csv_metadata(tmp_path, [(name, "REAL") for name in names])
    else:
        write_json_metadata(tmp_path, json.dumps({name: {"label": "REAL"} for name in names}, ensure_ascii=False))
    ds = build_dataset(tmp_path)
    assert len(ds.rejects) == 0, ds.rejects
    assert accepted(ds) == sorted(names)
    ids = ds.videos.set_index("relpath")["video_id"]
    for video_id in ids:
        assert re.fullmatch(r"[A-Za-z0-9._-]+", video_id), video_id
    assert ids["vidéo réelle 1.mp4"].startswith("video_reelle_1-")
    assert ids["sub dir/clip two.mp4"].startswith("clip_two-")
    assert re.fullmatch(r"video-[0-9a-f]{8}", ids["日本語.mp4"]), ids["日本語.mp4"]
    assert ids.is_unique
    assert_every_input_once(ds, tmp_path)


def test_original_missing_from_dataset(tmp_path, clip_factory):
    for name in ("f1.mp4", "f2.mp4", "f3.mp4"):
        clip_factory(name)
    write_csv_metadata(
        tmp_path,
        [("f1.mp4", "FAKE", "gone.mp4"), ("f2.mp4", "FAKE", "elsewhere/gone.mp4"), ("f3.mp4", "FAKE", "other.mp4")],
        header="path,label,original",
    )
    ds = build_dataset(tmp_path)
    assert len(ds.rejects) == 0, ds.rejects
    assert accepted(ds) == ["f1.mp4", "f2.mp4", "f3.mp4"]
    v = ds.videos.set_index("relpath")
    assert "'gone.mp4'" in v.loc["f1.mp4", "note"] and "not among the accepted videos" in v.loc["f1.mp4", "note"]
    assert "not among the accepted videos" in v.loc["f3.mp4", "note"]
    assert v.loc["f1.mp4", "group"] == v.loc["f2.mp4", "group"]
    assert v.loc["f3.mp4", "group"] != v.loc["f1.mp4", "group"]
    assert v.loc["f1.mp4", "split"] == v.loc["f2.mp4", "split"]
    assert v.loc["f1.mp4", "original"] == "gone.mp4"
    assert any("3 fakes name an original" in w for w in ds.warnings), ds.warnings
    assert_every_input_once(ds, tmp_path)


def test_group_given_two_splits_is_rejected(tmp_path, clip_factory):
    for name in ("orig.mp4", "fake.mp4", "other.mp4"):
        clip_factory(name)
    write_csv_metadata(
        tmp_path,
        [("orig.mp4", "REAL", "", "test"), ("fake.mp4", "FAKE", "orig.mp4", "train"), ("other.mp4", "REAL", "", "val")],
        header="path,label,original,split",
    )
    ds = build_dataset(tmp_path, split=SplitParams(use_given=True))
    assert accepted(ds) == ["other.mp4"]
    assert ds.videos.loc[0, "split"] == "val"
    assert_rejected(ds, "orig.mp4", "group 'orig.mp4'", "test, train")
    assert_rejected(ds, "fake.mp4", "group 'orig.mp4'", "test, train")
    assert_every_input_once(ds, tmp_path)


def test_identical_bytes_second_rejected(tmp_path, clip_factory):
    first = clip_factory("first.mp4")
    shutil.copyfile(first, tmp_path / "copy.mp4")
    clip_factory("other.mp4")
    write_csv_metadata(tmp_path, [("first.mp4", "REAL"), ("copy.mp4", "REAL"), ("other.mp4", "REAL")])
    ds = build_dataset(tmp_path)
    assert accepted(ds) == ["first.mp4", "other.mp4"]
    digest = hashlib.sha256(first.read_bytes()).hexdigest()
    assert_rejected(ds, "copy.mp4", "same content as first.mp4", digest[:12])
    assert_every_input_once(ds, tmp_path)


# ---------------------------------------------------------------- layouts, grouping, tables


def test_real_fake_folder_layout(tmp_path, clip_factory):
    clip_factory("real/a.mp4")
    clip_factory("real/nested/b.mp4")
    clip_factory("Fake/c.mp4")
    clip_factory("other/d.mp4")
    clip_factory("top.mp4")
    ds = build_dataset(tmp_path, split=ALL_TRAIN)
    assert ds.metadata == "real/ and fake/ folders"
    labels = dict(zip(ds.videos["relpath"], ds.videos["label"]))
    assert labels == {"real/a.mp4": "REAL", "real/nested/b.mp4": "REAL", "Fake/c.mp4": "FAKE"}
    assert dict(zip(ds.videos["relpath"], ds.videos["label_id"])) == {
        "real/a.mp4": 0,
        "real/nested/b.mp4": 0,
        "Fake/c.mp4": 1,
    }
    assert_rejected(ds, "other/d.mp4", "not under real/ or fake/")
    assert_rejected(ds, "top.mp4", "not under real/ or fake/")
    assert set(ds.videos["split"]) == {"train"}
    assert_every_input_once(ds, tmp_path)


def test_faceforensics_names_group(tmp_path, clip_factory):
    rows = [
        ("000.mp4", "REAL"),
        ("003.mp4", "REAL"),
        ("000_003.mp4", "FAKE"),
        ("003_000.mp4", "FAKE"),
        ("foo_000.mp4", "REAL"),
        ("bar_003_000.mp4", "FAKE"),
    ]
    for name, _ in rows:
        clip_factory(name)
    write_csv_metadata(tmp_path, rows)
    ds = build_dataset(tmp_path, split=ALL_TRAIN)
    assert len(ds.rejects) == 0, ds.rejects
    v = ds.videos.set_index("relpath")
    family = ["000.mp4", "003.mp4", "000_003.mp4", "003_000.mp4"]
    assert set(v.loc[family, "group"]) == {"000.mp4"}  # named after a REAL member
    assert v.loc["foo_000.mp4", "group"] == "foo_000.mp4"
    assert v.loc["bar_003_000.mp4", "group"] == "bar_003_000.mp4"
    assert (v["note"] == "").all()
    assert_every_input_once(ds, tmp_path)


def test_faceforensics_names_group_across_folders(tmp_path, clip_factory):
    rows = [
        ("original/000.mp4", "REAL"),
        ("original/003.mp4", "REAL"),
        ("Deepfakes/000_003.mp4", "FAKE"),
        ("FaceSwap/003_000.mp4", "FAKE"),
        ("original/004.mp4", "REAL"),
    ]
    for name, _ in rows:
        clip_factory(name)
    write_csv_metadata(tmp_path, rows)
    ds = build_dataset(tmp_path, split=ALL_TRAIN)
    groups = dict(zip(ds.videos["relpath"], ds.videos["group"]))
    assert {groups[name] for name, _ in rows[:4]} == {"original/000.mp4"}
    assert groups["original/004.mp4"] == "original/004.mp4"


def test_original_field_groups_fake_with_real(tmp_path, clip_factory):
    for name in ("real/x.mp4", "fake/x_swapped.mp4", "real/y.mp4"):
        clip_factory(name)
    write_csv_metadata(
        tmp_path,
        [("real/x.mp4", "REAL", ""), ("fake/x_swapped.mp4", "FAKE", "x.mp4"), ("real/y.mp4", "REAL", "")],
        header="path,label,original",
    )
    ds = build_dataset(tmp_path)
    v = ds.videos.set_index("relpath")
    assert v.loc["fake/x_swapped.mp4", "group"] == "real/x.mp4"
    assert v.loc["real/y.mp4", "group"] == "real/y.mp4"
    assert v.loc["fake/x_swapped.mp4", "split"] == v.loc["real/x.mp4", "split"]
    assert v.loc["fake/x_swapped.mp4", "note"] == ""


def test_output_table_columns_and_values(tmp_path, clip_factory):
    clip = clip_factory("a.mp4", frames=6, size=(64, 48), fps=10.0)
    (tmp_path / "bad.mp4").write_bytes(b"")
    write_csv_metadata(tmp_path, [("a.mp4", "FAKE"), ("bad.mp4", "REAL")])
    ds = build_dataset(tmp_path)
    assert list(ds.videos.columns) == VIDEO_COLUMNS
    assert list(ds.rejects.columns) == REJECT_COLUMNS
    row = ds.videos.iloc[0]
    assert row["relpath"] == "a.mp4"
    assert row["path"] == clip.as_posix()
    assert (row["label"], row["label_id"]) == ("FAKE", 1)
    assert (row["frames"], row["width"], row["height"]) == (6, 64, 48)
    assert row["fps"] == pytest.approx(10.0)
    assert row["duration_s"] == pytest.approx(0.6)
    assert row["size_bytes"] == clip.stat().st_size
    assert row["sha256"] == hashlib.sha256(clip.read_bytes()).hexdigest()
    assert row["video_id"] == f"a-{row['sha256'][:8]}"
    assert row["split"] in SPLITS
    assert row["source"] == "metadata.csv line 2"
    assert row["group"] == "a.mp4"
    assert list(ds.rejects.iloc[0]) == ["bad.mp4", "empty file (0 bytes)", "metadata.csv line 3"]
    assert "accepted 1 videos, rejected 1 entries" in ds.summary()


def test_output_columns_when_everything_is_rejected(tmp_path):
    (tmp_path / "bad.mp4").write_bytes(b"")
    write_csv_metadata(tmp_path, [("bad.mp4", "REAL"), ("gone.mp4", "REAL")])
    ds = build_dataset(tmp_path)
    assert len(ds.videos) == 0
    assert list(ds.videos.columns) == VIDEO_COLUMNS
    assert list(ds.rejects.columns) == REJECT_COLUMNS
    assert list(ds.rejects["path"]) == ["bad.mp4", "gone.mp4"]
    assert_every_input_once(ds, tmp_path)


def test_write_tables(tmp_path, tmp_path_factory, clip_factory):
    clip_factory("a.mp4")
    clip_factory("b.mp4")
    (tmp_path / "bad.mp4").write_bytes(b"")
    write_csv_metadata(tmp_path, [("a.mp4", "REAL"), ("b.mp4", "REAL"), ("bad.mp4", "REAL")])
    ds = build_dataset(tmp_path)
    out = tmp_path_factory.mktemp("out") / "dataset"
    for _ in range(2):  # a second write replaces the first cleanly
        videos_path, rejects_path = ds.write(out)
        assert (videos_path, rejects_path) == (out / "videos.csv", out / "rejects.csv")
        assert sorted(os.listdir(out)) == ["rejects.csv", "videos.csv"]
    videos = pd.read_csv(videos_path, keep_default_na=False)
    rejects = pd.read_csv(rejects_path, keep_default_na=False)
    assert list(videos.columns) == VIDEO_COLUMNS and list(rejects.columns) == REJECT_COLUMNS
    assert list(videos["relpath"]) == ["a.mp4", "b.mp4"]
    assert list(videos["sha256"]) == list(ds.videos["sha256"])
    assert list(rejects["path"]) == ["bad.mp4"]


# ---------------------------------------------------------------- splitting


def synthetic(n: int, seed: int, max_group: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """n items in groups of 1..max_group, each group one label (a fake and its original share a group)."""
    rng = np.random.default_rng(seed)
    sizes: list[int] = []
    while sum(sizes) < n:
        sizes.append(min(int(rng.integers(1, max_group + 1)), n - sum(sizes)))
    groups = np.repeat([f"g{i}" for i in range(len(sizes))], sizes)
    group_labels = rng.integers(0, 2, len(sizes))
    return np.repeat(group_labels, sizes), groups


SWEEP = [(n, seed) for n in (10, 25, 50, 100, 200) for seed in range(10)]


def groups_per_label(labels: np.ndarray, groups: np.ndarray) -> list[int]:
    return [len(set(groups[labels == value])) for value in (0, 1)]


def test_split_never_cuts_a_group():
    for n, seed in SWEEP:
        labels, groups = synthetic(n, seed)
        split = split_by_group(labels, groups, val=0.15, test=0.15, seed=seed)
        assert len(split) == n and set(split) <= set(SPLITS)
        per_group = pd.Series(split).groupby(groups).nunique()
        assert (per_group == 1).all(), (n, seed, per_group[per_group > 1])


def test_split_both_labels_everywhere_on_large_sets():
    for seed in range(10):
        labels, groups = synthetic(200, seed)
        assert min(groups_per_label(labels, groups)) >= 3
        split = split_by_group(labels, groups, val=0.15, test=0.15, seed=seed)
        for name in SPLITS:
            assert set(labels[split == name]) == {0, 1}, (seed, name)


def test_split_both_labels_everywhere_when_each_label_has_three_groups():
    failures = []
    for n, seed in SWEEP:
        labels, groups = synthetic(n, seed)
        if min(groups_per_label(labels, groups)) < 3:
            continue
        split = split_by_group(labels, groups, val=0.15, test=0.15, seed=seed)
        failures += [(n, seed, name) for name in SPLITS if set(labels[split == name]) != {0, 1}]
    assert not failures, failures


def test_split_same_seed_same_result():
    for n, seed in SWEEP:
        labels, groups = synthetic(n, seed)
        first = split_by_group(labels, groups, val=0.15, test=0.15, seed=seed)
        again = split_by_group(labels.copy(), groups.copy(), val=0.15, test=0.15, seed=seed)
        assert list(first) == list(again), (n, seed)


def test_split_other_seed_other_result():
    for seed in range(5):
        labels, groups = synthetic(200, seed)
        first = split_by_group(labels, groups, val=0.15, test=0.15, seed=seed)
        other = split_by_group(labels, groups, val=0.15, test=0.15, seed=seed + 100)
        assert list(first) != list(other), seed


@pytest.mark.parametrize(("val", "test"), [(0.15, 0.15), (0.2, 0.1), (0.1, 0.25)])
def test_split_ratios_roughly_respected(val, test):
    for seed in range(5):
        labels, groups = synthetic(200, seed)
        split = split_by_group(labels, groups, val=val, test=test, seed=seed)
        assert abs(np.mean(split == "test") - test) <= 0.07, (seed, np.mean(split == "test"))
        assert abs(np.mean(split == "val") - val) <= 0.07, (seed, np.mean(split == "val"))


def test_split_zero_ratios_keep_everything_in_train():
    labels, groups = synthetic(50, 0)
    assert set(split_by_group(labels, groups, val=0.0, test=0.0, seed=0)) == {"train"}


@pytest.mark.parametrize(("val", "test"), [(-0.1, 0.1), (0.1, -0.1), (1.0, 0.0), (0.0, 1.0), (0.5, 0.5), (0.6, 0.5)])
def test_split_invalid_ratios(val, test):
    labels, groups = synthetic(50, 0)
    with pytest.raises(ValueError, match="split ratios"):
        split_by_group(labels, groups, val=val, test=test, seed=0)
    with pytest.raises(ValueError, match="split ratios"):
        split_by_group(labels, groups, val=val, test=test, seed=0)


@pytest.mark.parametrize(("reals", "fakes"), [(1, 1), (2, 2), (3, 3), (6, 6)])
def test_split_small_mixed_set_of_single_groups(reals, fakes):
    labels = np.array([0] * reals + [1] * fakes)
    groups = np.array([f"g{i}" for i in range(len(labels))])
    split = split_by_group(labels, groups, val=0.15, test=0.15, seed=0)
    assert set(split) <= set(SPLITS) and len(split) == len(labels)


def test_build_dataset_small_mixed_set_gets_split(tmp_path, clip_factory):
    clip_factory("real/a.mp4")
    clip_factory("fake/b.mp4")
    ds = build_dataset(tmp_path)
    assert accepted(ds) == ["fake/b.mp4", "real/a.mp4"]
    assert set(ds.videos["split"]) <= set(SPLITS)


def test_use_given_split_is_honoured(tmp_path, clip_factory):
    for name in ("a.mp4", "b.mp4", "c.mp4", "d.mp4", "e.mp4"):
        clip_factory(name)
    write_csv_metadata(
        tmp_path,
        [
            ("a.mp4", "REAL", "", "test"),
            ("b.mp4", "REAL", "", "Validation"),
            ("c.mp4", "FAKE", "", "train"),
            ("d.mp4", "FAKE", "a.mp4", ""),
            ("e.mp4", "FAKE", "", "holdout"),
        ],
        header="path,label,original,split",
    )
    ds = build_dataset(tmp_path, split=SplitParams(use_given=True))
    assert len(ds.rejects) == 0, ds.rejects
    splits = dict(zip(ds.videos["relpath"], ds.videos["split"]))
    # d.mp4 has no split of its own and takes its original's.
    assert splits == {"a.mp4": "test", "b.mp4": "val", "c.mp4": "train", "d.mp4": "test", "e.mp4": "test"}


def test_given_split_ignored_unless_asked(tmp_path, clip_factory):
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        clip_factory(name)
    write_csv_metadata(
        tmp_path,
        [("a.mp4", "REAL", "bogus"), ("b.mp4", "REAL", "train"), ("c.mp4", "REAL", "train")],
        header="path,label,split",
    )
    ds = build_dataset(tmp_path, split=SplitParams(use_given=True))
    assert accepted(ds) == ["b.mp4", "c.mp4"]
    assert set(ds.videos["split"]) == {"train"}
    assert_rejected(ds, "a.mp4", "unknown split 'bogus'")
    ds = build_dataset(tmp_path, split=SplitParams(use_given=False))
    assert accepted(ds) == ["a.mp4", "b.mp4", "c.mp4"]
    assert len(ds.rejects) == 0


def test_use_given_without_split_column_falls_back_to_automatic_split(tmp_path, clip_factory):
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        clip_factory(name)
    write_csv_metadata(tmp_path, [("a.mp4", "REAL"), ("b.mp4", "REAL"), ("c.mp4", "REAL")])
    ds = build_dataset(tmp_path, split=SplitParams(use_given=True))
    assert accepted(ds) == ["a.mp4", "b.mp4", "c.mp4"]
    assert set(ds.videos["split"]) <= set(SPLITS)


# ---------------------------------------------------------------- the shared real clips


@pytest.fixture(scope="module")
def shared_dataset(shared_videos):
    return build_dataset(shared_videos)


@pytest.mark.slow
def test_shared_videos_all_accepted(shared_dataset, shared_videos):
    assert len(shared_dataset.videos) == 74
    assert len(shared_dataset.rejects) == 0, shared_dataset.rejects
    assert (shared_dataset.videos["label"] == "REAL").sum() == 41
    assert (shared_dataset.videos["label"] == "FAKE").sum() == 33
    assert set(shared_dataset.videos["split"]) == set(SPLITS)
    assert_every_input_once(shared_dataset, shared_videos)


@pytest.mark.slow
def test_shared_ffpp_c23_pair_same_split(shared_dataset):
    v = shared_dataset.videos.set_index("relpath")
    pair = ["videos/icpr2020dfdc--519.mp4", "videos/icpr2020dfdc--519_515.mp4"]
    assert v.loc[pair, "group"].nunique() == 1
    assert v.loc[pair, "split"].nunique() == 1


@pytest.mark.slow
def test_shared_ffpp_c40_pair_one_group(shared_dataset):
    v = shared_dataset.videos
    family = v[v["relpath"].str.contains(r"ffpp-c40--(?:orig_(?:183|253)|\w+_(?:183_253|253_183))\.mp4$")]
    assert len(family) == 10, list(family["relpath"])
    assert family["group"].nunique() == 1
    assert family["split"].nunique() == 1
    assert set(family["label"]) == {"REAL", "FAKE"}
    # The other c40 pair is a group of its own.
    other = v[v["relpath"].str.contains(r"ffpp-c40--.*(?:469|481)")]
    assert len(other) == 10 and other["group"].nunique() == 1
    assert set(other["group"]).isdisjoint(family["group"])


@pytest.mark.slow
def test_shared_groups_never_span_splits(shared_dataset):
    per_group = shared_dataset.videos.groupby("group")["split"].nunique()
    assert (per_group == 1).all(), per_group[per_group > 1]
