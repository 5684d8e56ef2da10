"""Face photos as training input and several source folders at once: scanning, rejects, grouping, splits,
the frames and faces stages on photos, and the per-source DVC stages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml

from deepfake.config import Config, FaceParams, FrameSampling, PoolSettings, SampleSpec, SplitParams, build
from deepfake.data.dataset import combine, scan_source
from deepfake.data.sample import bundled_photos, make_sample
from deepfake.errors import ConfigError, MetadataError
from deepfake.video.extraction import update_faces, update_frames
from tests.conftest import PROJECT_ROOT

INLINE = PoolSettings(workers=1, retry_delay_s=0)


def photo_folder(root: Path, people: int = 6) -> Path:
    """Real face photos (the portraits bundled with scikit-image and matplotlib, flipped and shifted so each
    file differs) listed in a faces.csv with an identity column and no label, like ../shared/data/real-faces."""
    root.mkdir(parents=True, exist_ok=True)
    portraits = [image for _, image in bundled_photos()]
    rows = []
    for person in range(people):
        for shot in range(2):  # two photos of each person: they must share a split
            image = portraits[person % len(portraits)]
            image = np.ascontiguousarray(image[:, ::-1] if (person + shot) % 2 else image)
            image = np.roll(image, 3 * person + shot, axis=1)
            name = f"images/p{person}_{shot}.jpg"
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / name), image)
            rows.append({"file": name, "identity": f"person {person}"})
    pd.DataFrame(rows).to_csv(root / "faces.csv", index=False)
    return root


def test_a_photo_folder_with_its_own_list_and_a_default_label(tmp_path):
    root = photo_folder(tmp_path / "photos")
    (root / "images" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "images" / "empty.png").write_bytes(b"")
    listed = pd.read_csv(root / "faces.csv")
    extra = pd.DataFrame({"file": ["images/broken.jpg", "images/empty.png"], "identity": ["x", "y"]})
    pd.concat([listed, extra]).to_csv(root / "faces.csv", index=False)

    scan = scan_source(root, "faces.csv", label="real")
    assert len(scan.videos) == 12 and set(scan.videos["kind"]) == {"photo"}
    assert set(scan.videos["label"]) == {"REAL"} and set(scan.videos["frames"]) == {1}
    reasons = dict(zip(scan.rejects["path"], scan.rejects["reason"]))
    assert "not a readable image" in reasons["images/broken.jpg"]
    assert "empty file" in reasons["images/empty.png"]


def test_a_list_without_labels_needs_a_default_label(tmp_path):
    root = photo_folder(tmp_path / "photos", people=1)
    with pytest.raises(MetadataError, match="faces.csv, line 1: expected a CSV header with 'path' and 'label'"):
        scan_source(root, "faces.csv")


def test_a_bare_folder_of_photos_takes_the_source_label(tmp_path):
    root = photo_folder(tmp_path / "photos", people=2)
    (root / "faces.csv").unlink()
    scan = scan_source(root, label="REAL")
    assert sorted(scan.videos["relpath"]) == [f"images/p{p}_{s}.jpg" for p in range(2) for s in range(2)]


def test_sources_combine_grouped_and_split_photos_never_tested(tmp_path):
    clips = tmp_path / "clips"
    make_sample(clips, spec=SampleSpec(clips_per_face=2, frames=4, width=160, height=120))
    photos = photo_folder(tmp_path / "photos", people=20)
    copy = tmp_path / "copy"
    copy.mkdir()
    first_clip = sorted(clips.glob("*.mp4"))[0]
    (copy / "real").mkdir()
    (copy / "real" / "same.mp4").write_bytes(first_clip.read_bytes())

    scans = {
        "clips": scan_source(clips),
        "photos": scan_source(photos, "faces.csv", label="REAL"),
        "copy": scan_source(copy),
    }
    dataset = combine(scans, SplitParams(val=0.25, test=0.25, seed=1))
    table = dataset.videos
    assert set(table["source_name"]) == {"clips", "photos"}
    # The copy's only clip has the same bytes as a clip of another source: rejected, naming the first.
    (reason,) = dataset.rejects.loc[dataset.rejects["path"] == "copy: real/same.mp4", "reason"]
    assert reason.startswith(f"same content as clips: {first_clip.name}")

    photo_rows = table[table["kind"] == "photo"]
    assert set(photo_rows["split"]) == {"train", "val"}  # photos have no video verdict to test
    assert (table[table["kind"] == "video"]["split"] == "test").any()
    # Two photos of one person share a group and a split; groups are named per source.
    per_person = photo_rows.groupby(photo_rows["relpath"].str.extract(r"p(\d+)_")[0])
    assert (per_person["group"].nunique() == 1).all() and (per_person["split"].nunique() == 1).all()
    assert photo_rows["group"].str.startswith("photos: ").all()
    assert "19 photos" not in dataset.summary() and "and 40 photos" in dataset.summary()


def test_photos_through_the_frames_and_faces_stages(tmp_path):
    root = photo_folder(tmp_path / "photos", people=2)
    cv2.imwrite(str(root / "images" / "wall.png"), np.full((200, 300, 3), 128, np.uint8))
    listed = pd.read_csv(root / "faces.csv")
    pd.concat([listed, pd.DataFrame({"file": ["images/wall.png"], "identity": ["wall"]})]).to_csv(
        root / "faces.csv", index=False
    )
    videos = combine({"photos": scan_source(root, "faces.csv", label="REAL")}).videos
    frames = update_frames(videos, tmp_path / "frames", FrameSampling(per_video=8), INLINE)
    assert len(frames.table) == len(videos) and set(frames.table["frame_index"]) == {0}
    faces = update_faces(videos, tmp_path / "frames", tmp_path / "faces", FaceParams(crop_size=64), INLINE)
    report = faces.report.set_index("video_id")
    wall = videos.loc[videos["relpath"] == "images/wall.png", "video_id"].item()
    assert report.loc[wall, "status"] != "ok" and "no face" in report.loc[wall, "reason"]
    with_faces = report.drop(index=wall)
    assert (with_faces["faces"] >= 1).all()
    assert set(faces.table["label"]) == {"REAL"}


def test_sources_in_params(tmp_path):
    config = build(Config, {"dataset": {"sources": {"a": {"root": "x"}, "b": {"root": "y", "label": "REAL"}}}}, "")
    assert config.dataset.sources["b"].label == "REAL" and config.dataset.sources["a"].metadata == "auto"
    with pytest.raises(ConfigError, match=r"dataset.sources.a.root must be set"):
        build(Config, {"dataset": {"sources": {"a": {"label": "REAL"}}}}, "")
    with pytest.raises(ConfigError, match="must be letters, digits"):
        build(Config, {"dataset": {"sources": {"a b": {"root": "x"}}}}, "")
    with pytest.raises(ConfigError, match="at least one folder"):
        build(Config, {"dataset": {"sources": {}}}, "")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_dvc_scans_each_source_in_its_own_stage(tmp_path):
    """Two sources in params.yaml make two `source@` stages; changing one folder rescans only that one."""
    project = tmp_path / "project"
    project.mkdir()
    for name in ("dvc.yaml", "stages", "deepfake", ".dvcignore"):
        (project / name).symlink_to(PROJECT_ROOT / name)
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    make_sample(project / "clips", spec=SampleSpec(clips_per_face=1, frames=4, width=160, height=120))
    photo_folder(project / "photos", people=3)
    params["dataset"]["sources"] = {
        "clips": {"root": "clips", "metadata": "auto", "label": ""},
        "photos": {"root": "photos", "metadata": "faces.csv", "label": "REAL"},
    }
    (project / "params.yaml").write_text(yaml.safe_dump(params))

    def dvc(*args):
        done = subprocess.run(
            [sys.executable, "-m", "dvc", *args], cwd=project, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    dvc("init", "--no-scm", "-q")
    out = dvc("repro", "dataset")
    assert "Running stage 'source@clips'" in out and "Running stage 'source@photos'" in out
    table = pd.read_csv(project / "data/interim/videos.csv")
    assert set(table["source_name"]) == {"clips", "photos"} and (table["kind"] == "photo").sum() == 6

    (project / "photos" / "images" / "p0_0.jpg").unlink()
    out = dvc("repro", "dataset")
    assert "Running stage 'source@photos'" in out and "Running stage 'source@clips'" not in out
    rejects = pd.read_csv(project / "data/interim/rejects.csv")
    assert "photos: images/p0_0.jpg" in set(rejects["path"])
