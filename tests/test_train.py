"""Training end to end on face crops the pipeline makes: a run, early stopping, imbalance, resume after kill -9."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest
import torch

from deepfake.config import FaceParams, FrameSampling, ModelParams, PoolSettings, SampleSpec, TrainParams
from deepfake.data.dataset import build_dataset
from deepfake.data.sample import make_sample
from deepfake.errors import ConfigError, DataError
from deepfake.model.classifier import build_classifier
from deepfake.model.training import FaceCrops, class_weights, collate_pairs, epoch_order, fit, training_rows
from deepfake.video.extraction import update_faces, update_frames
from tests.conftest import PROJECT_ROOT

TINY_MODEL = ModelParams(backbone="resnet18", weights="none", input_size=64)
TINY = TrainParams(epochs=2, batch_size=8, lr=1e-3, loader_workers=0, faces_per_video=3, seed=1)


class Unblended:
    """A stand-in for SelfBlend: every pseudo-fake is its crop unchanged, so only what else happens to it is
    left; it records each blend's donor and each re-rendered crop."""

    def __init__(self) -> None:
        self.donors, self.rendered_crops = [], []

    def with_seam(self, crop, landmarks, rng, donor=None):
        self.donors.append(donor)
        return crop.copy(), np.zeros(crop.shape[:2], np.float32)

    def rendered(self, crop, rng):
        self.rendered_crops.append(crop)
        return crop.copy()


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """Crops of the sample clips, made by the frames and faces stages' own functions."""
    root = tmp_path_factory.mktemp("train")
    make_sample(root / "clips", spec=SampleSpec(clips_per_face=2, frames=8, width=320, height=240))
    videos = build_dataset(root / "clips").videos
    pool = PoolSettings(workers=1)
    update_frames(videos, root / "frames", FrameSampling(per_video=4), pool)
    table = update_faces(videos, root / "frames", root / "faces", FaceParams(crop_size=64), pool).table
    assert set(table["split"]) == {"train", "val", "test"}
    return table, root / "faces"


def test_a_tiny_training_run_end_to_end(faces, caplog):
    table, faces_dir = faces
    with caplog.at_level(logging.INFO):
        result = fit(table, faces_dir, TINY_MODEL, TINY)
    messages = caplog.messages
    history = result.history
    assert list(history["epoch"]) == [1, 2]
    assert np.isfinite(history[["train_loss", "val_loss", "train_accuracy", "val_accuracy"]].to_numpy()).all()
    assert history["val_auc"].between(0, 1).all()  # val holds real faces, fakes and pseudo-fakes
    assert result.best_epoch in (1, 2) and result.resumed_from == 0
    assert result.origin.used == "none"
    assert messages[0] == "backbone resnet18: weights none (random init, as asked)"
    assert any(m.startswith("epoch 2: train loss") for m in messages)
    result.model.eval()
    assert result.model(torch.zeros(1, 3, 64, 64)).shape == (1, 2)


def test_training_is_reproducible_for_a_seed(faces):
    table, faces_dir = faces
    params = TrainParams(**{**TINY.__dict__, "epochs": 1})
    first = fit(table, faces_dir, TINY_MODEL, params)
    second = fit(table, faces_dir, TINY_MODEL, params)
    for name, tensor in first.model.state_dict().items():
        assert torch.equal(tensor, second.model.state_dict()[name]), name


def test_early_stopping_keeps_the_best_epoch(faces):
    table, faces_dir = faces
    # With no learning (only batch-norm statistics move) the validation loss soon stops improving.
    params = TrainParams(**{**TINY.__dict__, "epochs": 8, "lr": 0.0, "patience": 2, "select_by": "loss"})
    result = fit(table, faces_dir, TINY_MODEL, params)
    history = result.history
    assert len(history) < params.epochs, "training should have stopped early"
    assert result.best_epoch == int(history.loc[history["val_loss"].idxmin(), "epoch"])
    assert len(history) == result.best_epoch + params.patience


def test_the_epoch_kept_is_the_best_by_held_out_pseudo_fake_auc(faces):
    table, faces_dir = faces
    params = TrainParams(**{**TINY.__dict__, "epochs": 3, "patience": 5})
    assert params.select_by == "blend_auc"  # the default
    result = fit(table, faces_dir, TINY_MODEL, params)
    history = result.history
    assert history["val_blend_auc"].between(0, 1).all()
    # The first epoch with the highest AUC (a later tie does not replace it).
    assert result.best_epoch == int(history.loc[history["val_blend_auc"].idxmax(), "epoch"])


def test_each_epochs_weights_are_handed_out_and_the_best_is_the_one_returned(faces):
    table, faces_dir = faces
    params = TrainParams(**{**TINY.__dict__, "epochs": 3, "patience": 5, "average_epochs": 0})
    seen = {}

    def keep(epoch, model):
        seen[epoch] = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}

    result = fit(table, faces_dir, TINY_MODEL, params, after_epoch=keep)
    assert sorted(seen) == [1, 2, 3]
    assert not all(torch.equal(seen[1][name], seen[3][name]) for name in seen[1]), "the weights should move"
    for name, tensor in result.model.state_dict().items():
        assert torch.equal(tensor, seen[result.best_epoch][name]), name


def test_averaging_keeps_the_mean_of_the_last_epochs_validated_and_survives_a_resume(faces, tmp_path):
    table, faces_dir = faces
    params = TrainParams(**{**TINY.__dict__, "epochs": 3, "patience": 5, "average_epochs": 2})
    seen = {}

    def keep(epoch, model):
        seen[epoch] = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}

    checkpoint = tmp_path / "checkpoint.pt"
    result = fit(table, faces_dir, TINY_MODEL, params, checkpoint=checkpoint, after_epoch=keep)
    assert result.averaged_epochs == [2, 3] and result.kept == "epochs 2-3 averaged"
    for name, tensor in result.model.state_dict().items():
        if tensor.is_floating_point():
            assert torch.allclose(tensor, (seen[2][name] + seen[3][name]) / 2), name
        else:  # batch-norm's counter: the last epoch's
            assert torch.equal(tensor, seen[3][name]), name
    assert not all(torch.equal(result.model.state_dict()[name], seen[3][name]) for name in seen[3])
    # The average is validated on its own: its figures are no epoch's.
    assert set(result.validation) == {"val_loss", "val_accuracy", "val_auc", "val_blend_auc"}
    assert 0 <= result.validation["val_blend_auc"] <= 1
    assert result.validation["val_loss"] not in set(result.history["val_loss"])

    # A finished run's checkpoint holds the epochs to average: a rerun returns the same model.
    again = fit(table, faces_dir, TINY_MODEL, params, checkpoint=checkpoint)
    assert again.resumed_from == 3 and again.averaged_epochs == [2, 3]
    for name, tensor in result.model.state_dict().items():
        assert torch.equal(tensor, again.model.state_dict()[name]), name

    single = fit(table, faces_dir, TINY_MODEL, TrainParams(**{**params.__dict__, "average_epochs": 1, "epochs": 1}))
    assert single.averaged_epochs == [] and single.kept == "best epoch 1"
    assert single.validation["val_loss"] == single.history["val_loss"].iloc[0]


def test_validation_scores_keep_pseudo_fakes_and_labelled_fakes_apart():
    from deepfake.model.training import validation_scores

    # Faces in loader order: real, fake, real -> images real, blend, fake, real, blend.
    face_labels = np.array([0, 1, 0])
    labels = np.array([0, 1, 1, 0, 1])
    # The pseudo-fakes are told apart perfectly, the labelled fake not at all.
    probabilities = np.array([0.2, 0.9, 0.1, 0.3, 0.8])
    scores = validation_scores(probabilities, labels, face_labels)
    assert scores["blend_auc"] == 1.0 and scores["auc"] == 0.0
    only_reals = validation_scores(np.array([0.2, 0.9]), np.array([0, 1]), np.array([0]))
    assert only_reals["blend_auc"] == 1.0 and np.isnan(only_reals["auc"])


def test_self_blending_trains_on_real_faces_only_and_balances_each_item(faces):
    table, faces_dir = faces
    rows = training_rows(table, TINY, "train")
    assert (rows["label_id"] == 0).all() and rows.groupby("video_id").size().max() <= TINY.faces_per_video
    dataset = FaceCrops(rows, faces_dir, size=64, train=True, fakes="self_blend", seed=0)
    item = dataset[0]
    assert [label for _, label in item] == [0, 1] and item[0][0].shape == (3, 64, 64)
    assert not torch.equal(item[0][0], item[1][0])
    assert torch.equal(class_weights(dataset), torch.tensor([1.0, 1.0]))


def test_an_epoch_draws_its_video_share_and_walks_every_photo():
    from_video = np.array([True] * 3 + [False] * 17)
    assert np.array_equal(epoch_order(from_video, 0.0, seed=0, epoch=4), np.arange(20))
    seen = []
    for epoch in range(4):
        order = epoch_order(from_video, 0.5, seed=0, epoch=epoch)
        assert len(order) == 20 and from_video[order].sum() == 10  # as long as before, half from videos
        assert np.bincount(order[from_video[order]], minlength=3).tolist()[:3] in ([4, 3, 3], [3, 4, 3], [3, 3, 4])
        photos = order[~from_video[order]]
        assert len(set(photos)) == 10  # no photo twice in one epoch while there are more than it needs
        seen.extend(photos)
    assert set(seen) == set(range(3, 20))  # every photo within the epochs it takes to walk them all
    assert np.array_equal(epoch_order(from_video, 0.5, 0, 2), epoch_order(from_video, 0.5, 0, 2))
    assert not np.array_equal(epoch_order(from_video, 0.5, 0, 1), epoch_order(from_video, 0.5, 0, 2))
    only_photos = np.zeros(5, bool)  # one kind only: nothing to balance
    assert np.array_equal(epoch_order(only_photos, 0.5, 0, 1), np.arange(5))


def test_video_share_repeats_video_faces_with_their_own_draws_and_needs_each_faces_kind(faces):
    table, faces_dir = faces
    rows = training_rows(table, TINY, "train")
    kinds = np.where(np.arange(len(rows)) < 2, "video", "photo")  # two video faces among photos
    dataset = FaceCrops(
        rows.assign(kind=kinds), faces_dir, size=64, train=True, fakes="self_blend", seed=0, video_share=0.5
    )
    assert len(dataset) == len(rows)
    positions = [i for i, index in enumerate(dataset.order) if index == dataset.order[0]]
    assert len(positions) >= 2  # the same video face more than once in the epoch...
    first, second = (dataset[i] for i in positions[:2])
    assert not torch.equal(first[1][0], second[1][0])  # ...each time with its own pseudo-fake
    with pytest.raises(DataError, match="train.video_share needs each face's media kind"):
        fit(table, faces_dir, TINY_MODEL, TrainParams(**{**TINY.__dict__, "video_share": 0.5}))
    with pytest.raises(ConfigError, match="train.video_share is a share of each epoch"):
        TrainParams(video_share=1.0)


def test_seam_targets_mark_pseudo_fakes_seams_and_nothing_on_real_faces(faces):
    table, faces_dir = faces
    rows = training_rows(table, TINY, "train")
    dataset = FaceCrops(rows, faces_dir, size=64, train=True, fakes="self_blend", seed=0, seam_size=4)
    for index in range(len(dataset)):
        (real, real_label, real_seam), (fake, fake_label, fake_seam) = dataset[index]
        assert (real_label, fake_label) == (0, 1) and real_seam.shape == fake_seam.shape == (4, 4)
        assert torch.equal(real_seam, torch.zeros(4, 4))
        assert float(fake_seam.max()) == pytest.approx(1.0) and float(fake_seam.min()) >= 0
    images, labels, seams = collate_pairs([dataset[0], dataset[1]])
    assert images.shape == (4, 3, 64, 64) and labels.tolist() == [0, 1, 0, 1] and seams.shape == (4, 4, 4)
    # A labelled fake's seam is unknown (NaN: left out of the loss); without seam_size items are pairs as before.
    val = table[table["split"] == "val"].reset_index(drop=True)
    labelled = FaceCrops(val, faces_dir, size=64, train=False, fakes="both", seed=0, seam_size=4)
    fake_index = int(np.flatnonzero(labelled.labels == 1)[0])
    [(_, label, seam)] = labelled[fake_index]
    assert label == 1 and torch.isnan(seam).all()
    assert all(
        len(pair) == 2 for pair in FaceCrops(rows, faces_dir, size=64, train=True, fakes="self_blend", seed=0)[0]
    )


def test_the_seam_loss_trains_a_head_that_the_model_does_not_keep(faces, tmp_path):
    table, faces_dir = faces
    params = TrainParams(**{**TINY.__dict__, "epochs": 1, "seam_loss": 1.0})
    checkpoint = tmp_path / "checkpoint.pt"
    result = fit(table, faces_dir, TINY_MODEL, params, checkpoint=checkpoint)
    assert np.isfinite(result.history[["train_loss", "val_loss"]].to_numpy()).all()
    assert (result.history["train_seam_loss"] > 0).all()  # reported apart from the classifier's loss
    plain = fit(table, faces_dir, TINY_MODEL, TrainParams(**{**TINY.__dict__, "epochs": 1}))
    assert "train_seam_loss" not in plain.history
    assert result.model.state_dict().keys() == plain.model.state_dict().keys()  # the same network
    # The seam's gradient reached the backbone: same seed, different weights.
    assert any(not torch.equal(t, plain.model.state_dict()[n]) for n, t in result.model.state_dict().items())
    assert not any(module._forward_hooks for module in result.model.modules())  # nothing left attached
    assert "seam_head" in torch.load(checkpoint, weights_only=True)
    again = fit(table, faces_dir, TINY_MODEL, params, checkpoint=checkpoint)  # the finished run, resumed
    assert again.resumed_from == 1
    for name, tensor in result.model.state_dict().items():
        assert torch.equal(tensor, again.model.state_dict()[name]), name


def test_a_real_face_and_its_pseudo_fake_get_the_same_degradation(faces):
    table, faces_dir = faces
    dataset = FaceCrops(training_rows(table, TINY, "train"), faces_dir, size=64, train=True, fakes="self_blend", seed=0)
    dataset.blend = Unblended()  # a blend that changes nothing: only degradation is left
    for epoch in range(3):
        dataset.set_epoch(epoch)
        for index in range(len(dataset)):
            (real, real_label), (fake, fake_label) = dataset[index]
            assert (real_label, fake_label) == (0, 1) and torch.equal(real, fake)


def test_h264_degradation_is_shared_by_the_pair_and_deterministic(faces):
    from deepfake.model.augment import Degrade

    table, faces_dir = faces
    rows = training_rows(table, TINY, "train")
    dataset = FaceCrops(
        rows, faces_dir, size=64, train=True, fakes="self_blend", seed=0, degrade=Degrade(h264=1.0, jpeg=0.0)
    )
    dataset.blend = Unblended()
    (real, _), (fake, _) = dataset[0]
    assert torch.equal(real, fake) and torch.equal(real, dataset[0][0][0])
    plain = FaceCrops(rows, faces_dir, size=64, train=True, fakes="self_blend", seed=0, degrade=Degrade(jpeg=0.0))
    assert not torch.equal(real, plain[0][0][0])  # the codec changed the pixels


ONLY = dict(flip=0.0, colour=0.0, jpeg=0.0, rescale=0.0, shift=0.0)  # every other degradation off


def degraded_alike(faces, **setting):
    """The first training face and its (unblended) pseudo-fake as degraded by `setting` alone, the face drawn
    again, and its crop as stored."""
    import cv2

    from deepfake.model.augment import Degrade

    table, faces_dir = faces
    rows = training_rows(table, TINY, "train")
    dataset = FaceCrops(
        rows, faces_dir, size=64, train=True, fakes="self_blend", seed=0, degrade=Degrade(**setting, **ONLY)
    )
    dataset.blend = Unblended()
    (real, _), (fake, _) = dataset[0]
    return real, fake, dataset[0][0][0], cv2.imread(str(faces_dir / rows["crop"][0]))


def test_sharpening_is_shared_by_the_pair_and_adds_detail(faces):
    import cv2

    from deepfake.model.augment import Degrade

    real, fake, again, crop = degraded_alike(faces, sharpen=1.0)
    assert torch.equal(real, fake) and torch.equal(real, again)  # alike within the pair, and seeded
    sharpened = Degrade(sharpen=1.0, **ONLY)(crop, np.random.default_rng(0))

    def detail(image):
        return cv2.Laplacian(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.CV_64F).var()

    assert detail(sharpened) > 1.2 * detail(crop)
    assert np.array_equal(Degrade(**ONLY)(crop, np.random.default_rng(0)), crop)  # off: untouched


def test_camera_noise_is_shared_by_the_pair_and_sized_by_sigma(faces):
    from deepfake.model.augment import Degrade, sensor_noise

    real, fake, again, crop = degraded_alike(faces, noise=1.0)
    assert torch.equal(real, fake) and torch.equal(real, again)  # the same noise on both, and seeded
    assert not np.array_equal(Degrade(noise=1.0, **ONLY)(crop, np.random.default_rng(0)), crop)
    grey = np.full((128, 128, 3), 128, np.uint8)
    for sigma in (2.0, 6.0):
        noisy = sensor_noise(grey, sigma, np.random.default_rng(1)).astype(float) - 128
        # brightness noise of sigma plus a third of it per channel: about 1.05 sigma in each channel
        assert abs(noisy.std() - 1.054 * sigma) < 0.1 * sigma
        assert np.corrcoef(noisy[..., 0].ravel(), noisy[..., 2].ravel())[0, 1] > 0.8  # mostly shared by channels


def test_h264_round_trip_keeps_odd_sizes_and_loses_detail():
    from deepfake.images import h264

    rng = np.random.default_rng(0)
    image = (rng.random((63, 81, 3)) * 255).astype(np.uint8)
    light, heavy = h264(image, 18), h264(image, 45)
    assert light.shape == heavy.shape == image.shape
    assert np.abs(heavy.astype(int) - image).mean() > np.abs(light.astype(int) - image).mean()
    assert np.array_equal(h264(image, 30), h264(image, 30))


def test_frozen_early_layers_keep_their_weights(faces):
    from deepfake.model.classifier import early_layers

    table, faces_dir = faces
    params = TrainParams(**{**TINY.__dict__, "epochs": 1, "freeze_layers": 3})
    trained = fit(table, faces_dir, TINY_MODEL, params).model
    torch.manual_seed(params.seed)  # fit builds the model right after seeding: the same initial weights
    initial, _ = build_classifier(TINY_MODEL.backbone, TINY_MODEL.weights)
    pairs = list(zip(early_layers(trained.backbone), early_layers(initial.backbone)))
    for now, before in pairs[:3]:
        for a, b in zip(now.parameters(), before.parameters()):
            assert torch.equal(a, b)
    later = pairs[3]
    assert any(not torch.equal(a, b) for a, b in zip(later[0].parameters(), later[1].parameters()))


def test_class_imbalance_is_weighted_out(faces):
    table, faces_dir = faces
    reals = table[table["label_id"] == 0].head(2)
    fakes = table[table["label_id"] == 1].head(10)
    dataset = FaceCrops(pd.concat([reals, fakes]), faces_dir, size=64, train=True, fakes="dataset", seed=0)
    weights = class_weights(dataset)
    assert torch.allclose(weights, torch.tensor([12 / 4, 12 / 20]))
    assert torch.isclose(weights[0] * 2, weights[1] * 10)  # each class carries the same total weight


def test_bad_params_are_refused():
    with pytest.raises(ValueError, match="train.fakes must be one of"):
        TrainParams(fakes="gan")
    with pytest.raises(ValueError, match="train.scheduler"):
        TrainParams(scheduler="linear")
    with pytest.raises(ConfigError, match="train.average_epochs must be at least 0"):
        TrainParams(average_epochs=-1)


def test_bfloat16_training_runs_and_learns_like_float32(faces):
    table, faces_dir = faces
    results = {
        precision: fit(
            table, faces_dir, TINY_MODEL, TrainParams(**{**TINY.__dict__, "epochs": 1, "precision": precision})
        )
        for precision in ("fp32", "bf16")
    }
    losses = {p: r.history["train_loss"].iloc[0] for p, r in results.items()}
    assert np.isfinite(list(losses.values())).all()
    assert abs(losses["bf16"] - losses["fp32"]) < 0.1 * losses["fp32"]  # the same run, only rounding differs
    weight = "head.1.weight"
    assert not torch.equal(results["bf16"].model.state_dict()[weight], results["fp32"].model.state_dict()[weight])


def test_a_damaged_checkpoint_is_ignored_and_training_starts_afresh(faces, tmp_path, caplog):
    table, faces_dir = faces
    params = TrainParams(**{**TINY.__dict__, "epochs": 1})
    checkpoint = tmp_path / "checkpoint.pt"
    for damage in (b"", b"\x80\x04garbage", b"PK\x03\x04" + bytes(64)):
        checkpoint.write_bytes(damage)
        with caplog.at_level(logging.WARNING):
            result = fit(table, faces_dir, TINY_MODEL, params, checkpoint=checkpoint)
        assert result.resumed_from == 0 and len(result.history) == 1
        assert any("not a readable checkpoint" in m and "starts from the beginning" in m for m in caplog.messages)
        caplog.clear()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_kill_9_mid_training_then_rerun_gives_the_same_model(faces, tmp_path):
    table, faces_dir = faces
    table.to_csv(tmp_path / "faces.csv", index=False)
    params = TrainParams(**{**TINY.__dict__, "epochs": 4, "patience": 10, "faces_per_video": 4})
    checkpoint = tmp_path / "checkpoint.pt"
    script = textwrap.dedent(f"""
        import logging, sys, pandas as pd, torch
        from deepfake.config import ModelParams, TrainParams
        from deepfake.model.training import fit, save_model
        logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(message)s")
        result = fit(pd.read_csv({str(tmp_path / "faces.csv")!r}), {str(faces_dir)!r},
                     ModelParams(**{TINY_MODEL.__dict__!r}), TrainParams(**{params.__dict__!r}),
                     checkpoint={str(checkpoint)!r})
        save_model(result.model, {str(tmp_path / "model.pt")!r})
        print("resumed from", result.resumed_from, flush=True)
    """)

    process = subprocess.Popen([sys.executable, "-c", script], cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    # Kill as soon as the first epoch's checkpoint is on disk: in the middle of the second epoch.
    while time.monotonic() < deadline and process.poll() is None and not checkpoint.is_file():
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert checkpoint.is_file() and not (tmp_path / "model.pt").exists()

    rerun = subprocess.run(
        [sys.executable, "-c", script], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300
    )
    assert rerun.returncode == 0, rerun.stderr
    assert "resuming from" in rerun.stdout and "resumed from 0" not in rerun.stdout
    resumed = torch.load(tmp_path / "model.pt", weights_only=True)

    uninterrupted = fit(table, faces_dir, TINY_MODEL, params).model.state_dict()
    for name, tensor in uninterrupted.items():
        assert torch.equal(tensor, resumed[name]), name


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_process_gloo_ddp_training_on_cpu(faces, tmp_path):
    """torchrun with 2 CPU processes: gloo syncs the gradients, so both end with the same trained weights."""
    table, faces_dir = faces
    table.to_csv(tmp_path / "faces.csv", index=False)
    params = TrainParams(**{**TINY.__dict__, "epochs": 1, "processes": 2})
    script = tmp_path / "ddp_fit.py"
    script.write_text(
        textwrap.dedent(f"""
        import json, os, pandas as pd, torch
        from deepfake.config import ModelParams, TrainParams
        from deepfake.model.training import fit, save_model
        result = fit(pd.read_csv({str(tmp_path / "faces.csv")!r}), {str(faces_dir)!r},
                     ModelParams(**{TINY_MODEL.__dict__!r}), TrainParams(**{params.__dict__!r}),
                     checkpoint={str(tmp_path / "checkpoint.pt")!r})
        rank = torch.distributed.get_rank()
        save_model(result.model, {str(tmp_path)!r} + f"/rank{{rank}}.pt")
        json.dump({{"world": torch.distributed.get_world_size(), "backend": torch.distributed.get_backend(),
                   "history": result.history.to_dict("records")}}, open({str(tmp_path)!r} + f"/rank{{rank}}.json", "w"))
        torch.distributed.destroy_process_group()
    """)
    )
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", str(script)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    reports = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert all(r["world"] == 2 and r["backend"] == "gloo" for r in reports)
    assert reports[0]["history"] == reports[1]["history"]  # averaged across processes, validated on the whole split
    assert np.isfinite(reports[0]["history"][0]["train_loss"])
    weights = [torch.load(tmp_path / f"rank{rank}.pt", weights_only=True) for rank in (0, 1)]
    torch.manual_seed(TINY.seed)
    initial = build_classifier("resnet18", "none")[0].state_dict()
    assert all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0])
    assert not torch.equal(weights[0]["head.1.weight"], initial["head.1.weight"])  # it did train
    assert (tmp_path / "checkpoint.pt").is_file()  # written by rank 0 alone


def test_a_swap_takes_its_face_from_another_person_and_only_in_training(faces):
    table, faces_dir = faces
    rows = training_rows(table, TINY, "train")
    dataset = FaceCrops(rows, faces_dir, size=64, train=True, fakes="self_blend", seed=0, swap=1.0)
    dataset.blend = Unblended()
    for index in range(len(dataset)):
        dataset[index]
    assert any(d is not None for d in dataset.blend.donors)
    people = rows["video_id"].to_numpy()
    for index in range(len(dataset)):  # a donor is never the same person (same video)
        donor = dataset._donor(index, np.random.default_rng(index))
        if donor is not None:
            [match] = [j for j, path in enumerate(dataset.paths) if np.array_equal(dataset.landmarks[j], donor[1])][:1]
            assert people[match] != people[index]
    assert FaceCrops(rows, faces_dir, size=64, train=False, fakes="self_blend", seed=0, swap=1.0).swap == 0.0


def test_a_rendered_pseudo_fake_replaces_the_blend_and_only_in_training(faces):
    table, faces_dir = faces
    rows = training_rows(table, TINY, "train")
    dataset = FaceCrops(rows, faces_dir, size=64, train=True, fakes="self_blend", seed=0, rendered=1.0)
    dataset.blend = Unblended()  # records which kind of pseudo-fake each real face got
    for index in range(len(dataset)):
        items = dataset[index]
        assert [label for _, label in items] == [0, 1]
    assert len(dataset.blend.rendered_crops) == len(dataset) and not dataset.blend.donors
    validation = FaceCrops(rows, faces_dir, size=64, train=False, fakes="self_blend", seed=0, rendered=1.0)
    assert validation.rendered == 0.0
    half = FaceCrops(rows, faces_dir, size=64, train=True, fakes="self_blend", seed=0, rendered=0.5)
    half.blend = Unblended()
    for index in range(len(half)):
        half[index]
    assert half.blend.rendered_crops and half.blend.donors  # a mix, by chance per face
