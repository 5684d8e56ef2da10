"""The quality benchmark's training half never trains on a video it scores."""

import importlib.util
import os
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import PROJECT_ROOT


@pytest.fixture(scope="module")
def quality():
    spec = importlib.util.spec_from_file_location("quality", PROJECT_ROOT / "bench" / "quality.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_videos_and_their_groups_are_held_out_of_training(quality, tmp_path):
    videos = pd.DataFrame(
        {
            "video_id": ["orig", "fake", "other", "photo"],
            "relpath": ["videos/orig.mp4", "videos/fake.mp4", "videos/other.mp4", "images/photo.jpg"],
            "group": ["g1", "g1", "g2", "g3"],
        }
    ).assign(path=lambda t: [str(tmp_path / r) for r in t["relpath"]])
    faces = pd.DataFrame({"video_id": ["orig", "orig", "fake", "other", "photo"], "crop": list("abcde")})
    # The benchmark names only the fake, by a path spelt differently: its original goes with it.
    sets = {"pairs": pd.DataFrame({"path": [str(tmp_path / "videos" / "sub" / ".." / "fake.mp4")]})}

    kept, held_out = quality.without_benchmark_videos(faces, videos, sets)

    assert list(kept["crop"]) == ["d", "e"]
    assert held_out == ["videos/fake.mp4", "videos/orig.mp4"]


def test_nothing_is_held_out_when_no_benchmark_video_is_in_the_workspace(quality, tmp_path):
    videos = pd.DataFrame({"video_id": ["a"], "relpath": ["videos/a.mp4"], "group": ["g"], "path": [str(tmp_path)]})
    faces = pd.DataFrame({"video_id": ["a"], "crop": ["x"]})

    kept, held_out = quality.without_benchmark_videos(faces, videos, {"s": pd.DataFrame({"path": ["/elsewhere"]})})

    assert kept.equals(faces) and held_out == []


def test_the_ffpp_originals_the_benchmark_scores_are_real_clips_of_real_videos(quality):
    """Why the hold-out exists: the FF++ pairs' originals are REAL clips in the folder the shared model trains on."""
    if not (quality.SHARED / "real-videos").is_dir():
        pytest.skip(f"shared data not found at {quality.SHARED}")
    ffpp = quality.ffpp_set()
    originals = ffpp[ffpp["label"] == "REAL"]
    assert len(originals) >= 6
    assert all(Path(path).parent == quality.SHARED / "real-videos" / "videos" for path in originals["path"])
    assert set(ffpp.loc[ffpp["label"] == "FAKE", "original"]) <= set(originals["file"])


def test_several_epochs_weights_average_their_floats_and_keep_the_last_counters(quality, tmp_path):
    import torch

    paths = []
    for epoch, value in enumerate([1.0, 2.0, 6.0], start=1):
        state = {"conv.weight": torch.full((2, 2), value), "bn.num_batches_tracked": torch.tensor(epoch * 10)}
        torch.save(state, tmp_path / f"seed0.epoch{epoch}.pt")
        paths.append(str(tmp_path / f"seed0.epoch{epoch}.pt"))

    averaged = quality.averaged_weights(paths)

    assert torch.equal(averaged["conv.weight"], torch.full((2, 2), 3.0))
    assert averaged["bn.num_batches_tracked"].item() == 30


def _scored_run(folder: Path, seed: int, fake_scores: list[float]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, prefix in (("dev", "d"), ("ffpp", "f")):
        pd.DataFrame(
            {
                "file": [f"{prefix}{i}.mp4" for i in range(6)],
                "label": ["REAL"] * 3 + ["FAKE"] * 3,
                "family": ["real"] * 3 + ["swap"] * 3,
                "original": [""] * 6,
                "p_fake": [0.2, 0.4, 0.6] + fake_scores,
            }
        ).to_csv(folder / f"seed{seed}.{name}.csv", index=False)


def test_two_runs_are_compared_per_set_and_seed_on_the_same_videos(quality, tmp_path, capsys):
    import argparse

    _scored_run(tmp_path / "better", 0, [0.7, 0.8, 0.9])  # every fake above every real: AUC 1
    _scored_run(tmp_path / "base", 0, [0.1, 0.5, 0.9])  # AUC 5/9
    _scored_run(tmp_path / "base", 1, [0.1, 0.3, 0.5])  # AUC 3/9

    quality.compare(argparse.Namespace(out=str(tmp_path), compare=["better", "base"]))

    table = pd.read_csv(tmp_path / "compare.better.base.csv")
    assert sorted(set(table["set"])) == ["dev", "ffpp", "pooled"]
    dev = table[table["set"] == "dev"].set_index("baseline_seed")["auc_difference"]
    assert dev[0] == pytest.approx(4 / 9) and dev[1] == pytest.approx(6 / 9)
    assert (table[table["set"] == "pooled"]["videos"] == 12).all()  # both sets' videos, each once
    assert "dev     seed 0 vs 1: +0.667" in capsys.readouterr().out

    quality.compare(argparse.Namespace(out=str(tmp_path), compare=["base", "base"]))  # seeds against each other only
    assert set(zip(*[pd.read_csv(tmp_path / "compare.base.base.csv")[c] for c in ("seed", "baseline_seed")])) == {
        (0, 1),
        (1, 0),
    }
    with pytest.raises(SystemExit, match="missing: no scored sets"):
        quality.compare(argparse.Namespace(out=str(tmp_path), compare=["missing", "base"]))
    with pytest.raises(SystemExit, match="better and better: no set and pair of seeds in common"):
        quality.compare(argparse.Namespace(out=str(tmp_path), compare=["better", "better"]))  # one seed


def test_an_epoch_of_a_run_still_training_takes_its_history_from_the_checkpoint(quality, tmp_path):
    import json

    import torch

    epochs = [{"epoch": 1, "val_blend_auc": 0.8}, {"epoch": 2, "val_blend_auc": 0.9}]
    run = tmp_path / "seed0"
    with pytest.raises(SystemExit, match="seed0.history.csv: not found, nor a readable seed0.checkpoint.pt"):
        quality.run_history(run)
    checkpoint = {"key": "k", "model": {}, "optimizer": {}, "history": json.dumps(epochs)}
    torch.save(checkpoint, tmp_path / "seed0.checkpoint.pt")
    assert quality.run_history(run).to_dict("records") == epochs
    # Once the run has finished, its history file is the record.
    pd.DataFrame(epochs[:1]).to_csv(tmp_path / "seed0.history.csv", index=False)
    assert quality.run_history(run).to_dict("records") == epochs[:1]


def test_a_workspace_without_face_crops_is_named_with_the_command_that_makes_them(quality, tmp_path):
    import argparse

    args = argparse.Namespace(workspace=str(tmp_path / "nowhere"), set=[])
    with pytest.raises(SystemExit, match="nowhere: no face crops to train on; `make shared-faces`"):
        quality.train_and_score(args)
    (tmp_path / "prepared").mkdir()  # prepared, its pipeline not run yet
    (tmp_path / "prepared" / "params.yaml").write_text((PROJECT_ROOT / "params.yaml").read_text())
    with pytest.raises(SystemExit, match="prepared: no face crops"):
        quality.train_and_score(argparse.Namespace(workspace=str(tmp_path / "prepared"), set=[]))


def test_a_second_training_run_is_refused_while_one_holds_the_crop_cache(quality, tmp_path):
    cache = tmp_path / "cache"
    with quality.cache_lock(cache):
        with pytest.raises(SystemExit, match=r"cache: another benchmark run \(process \d+\) is using the cached crops"):
            with quality.cache_lock(cache):
                pass
    with quality.cache_lock(cache):  # released when the first run ends
        assert (cache / ".lock").read_text() == str(os.getpid())


def test_real_faces_shifts_are_measured_against_the_same_faces_unchanged(quality, tmp_path):
    import cv2
    import numpy as np

    from deepfake.config import Config

    class FineDetail:
        """A face classifier whose fake logit is the face's fine detail: sharpening and noise both raise it."""

        def face_logits(self, images, size, batch_size=16, flip=False):
            return np.array([cv2.Laplacian(cv2.cvtColor(i, cv2.COLOR_BGR2GRAY), cv2.CV_64F).std() for i in images])

    yy, xx = np.mgrid[:96, :96]
    face = np.dstack([(128 + 60 * np.sin(xx / 9.0) * np.cos(yy / 13.0)).astype(np.uint8)] * 3)
    for name in ("a.jpg", "b.jpg"):
        cv2.imwrite(str(tmp_path / name), face)
    faces = pd.DataFrame({"crop": ["a.jpg", "b.jpg", "b.jpg"], "label": ["REAL", "REAL", "FAKE"]})
    shifts = quality.real_shifts(FineDetail(), faces, tmp_path, Config())
    assert set(shifts) == {"sharpened_shift", "noise3_shift", "noise8_shift"}
    assert 0 < shifts["sharpened_shift"] and 0 < shifts["noise3_shift"] < shifts["noise8_shift"]
