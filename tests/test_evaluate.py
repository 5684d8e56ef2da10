"""Evaluation: metrics against scikit-learn, each aggregation rule, thresholds from validation, calibration."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn import metrics as sk

from deepfake.config import AggregationParams
from deepfake.evaluation.aggregate import confident_mean, frame_scores, max_track_mean, video_scores
from deepfake.evaluation.metrics import (
    bootstrap_auc,
    bootstrap_auc_difference,
    choose_threshold,
    classification_metrics,
    fit_temperature,
    reliability,
)
from deepfake.images import down_up, sharpen, stored
from deepfake.model.scores import p_fake

RULE = AggregationParams(strategy="confident", fake_threshold=0.8, real_threshold=0.2, min_fake_frames=3)


# ------------------------------------------------------------------ metrics


def test_metrics_match_scikit_learn():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    scores = np.clip(labels * 0.3 + rng.random(200) * 0.7, 0, 1)
    result = classification_metrics(labels, scores, threshold=0.55)
    predicted = (scores >= 0.55).astype(int)
    assert result["count"] == 200
    assert result["accuracy"] == pytest.approx(sk.accuracy_score(labels, predicted))
    assert result["balanced_accuracy"] == pytest.approx(sk.balanced_accuracy_score(labels, predicted))
    assert result["precision"] == pytest.approx(sk.precision_score(labels, predicted))
    assert result["recall"] == pytest.approx(sk.recall_score(labels, predicted))
    assert result["f1"] == pytest.approx(sk.f1_score(labels, predicted))
    assert result["auc"] == pytest.approx(sk.roc_auc_score(labels, scores))
    assert result["log_loss"] == pytest.approx(sk.log_loss(labels, scores))
    tn, fp, fn, tp = sk.confusion_matrix(labels, predicted).ravel()
    assert result["confusion"] == {"tn": tn, "fp": fp, "fn": fn, "tp": tp}


def test_hand_made_confusion_matrix():
    result = classification_metrics([0, 0, 1, 1, 1], [0.1, 0.7, 0.9, 0.6, 0.2], threshold=0.5)
    assert result["confusion"] == {"tn": 1, "fp": 1, "fn": 1, "tp": 2}
    assert result["accuracy"] == pytest.approx(3 / 5)
    assert result["precision"] == pytest.approx(2 / 3)
    assert result["recall"] == pytest.approx(2 / 3)


def test_metrics_with_one_class_are_none_not_a_crash():
    result = classification_metrics([1, 1, 1], [0.9, 0.8, 0.3], threshold=0.5)
    assert result["auc"] is None and result["balanced_accuracy"] is None
    assert result["accuracy"] == pytest.approx(2 / 3)
    assert classification_metrics([], [], 0.5) == {"count": 0}


def test_threshold_is_the_best_separating_validation_score():
    # Real scores up to 0.3, fakes from 0.35: any threshold in (0.3, 0.35] separates them perfectly.
    threshold, source = choose_threshold([0, 0, 0, 1, 1], [0.1, 0.2, 0.3, 0.35, 0.9])
    assert 0.3 < threshold < 0.35
    assert source.startswith("validation")
    result = classification_metrics([0, 1], [0.31, 0.34], threshold)
    assert result["accuracy"] == 1.0


def test_threshold_defaults_to_one_half_when_validation_has_one_class():
    threshold, source = choose_threshold([0, 0], [0.2, 0.4])
    assert threshold == 0.5 and "one class" in source


def test_bootstrap_interval_brackets_the_auc():
    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1], 30)
    scores = labels * 0.4 + rng.random(60) * 0.8
    low, high = bootstrap_auc(labels, scores, rounds=300, seed=0)
    auc = sk.roc_auc_score(labels, scores)
    assert low < auc < high and 0 <= low and high <= 1
    assert bootstrap_auc(labels, scores, rounds=300, seed=0) == (low, high)  # seeded
    assert bootstrap_auc([1, 1], [0.2, 0.3]) == (None, None)


def test_a_paired_difference_is_known_more_tightly_than_either_auc():
    rng = np.random.default_rng(3)
    labels = np.repeat([0, 1], 30)
    hardness = rng.normal(0, 1, 60)  # what both models find hard: the set's own luck
    baseline = labels * 0.8 + hardness + rng.normal(0, 0.3, 60)
    better = labels * 1.2 + hardness + rng.normal(0, 0.3, 60)
    difference, low, high = bootstrap_auc_difference(labels, better, baseline, rounds=300, seed=0)
    assert difference == pytest.approx(sk.roc_auc_score(labels, better) - sk.roc_auc_score(labels, baseline))
    assert 0 < low < difference < high
    alone = [bootstrap_auc(labels, scores, rounds=300, seed=0) for scores in (better, baseline)]
    assert high - low < min(top - bottom for bottom, top in alone) / 2
    assert bootstrap_auc_difference(labels, baseline, baseline, rounds=50) == (0.0, 0.0, 0.0)
    assert bootstrap_auc_difference([1, 1], [0.2, 0.3], [0.1, 0.2]) == (None, None, None)


def test_temperature_scaling_calibrates_overconfident_logits():
    rng = np.random.default_rng(2)
    true_logits = rng.normal(0, 2, 4000)
    labels = (rng.random(4000) < p_fake(true_logits)).astype(int)
    overconfident = true_logits * 4  # a model 4x too sure of itself
    temperature = fit_temperature(overconfident, labels)
    assert temperature == pytest.approx(4, rel=0.15)
    before, _ = reliability(labels, p_fake(overconfident))
    after, table = reliability(labels, p_fake(overconfident / temperature))
    assert after < before / 2
    assert sum(row["count"] for row in table) == 4000
    assert fit_temperature(overconfident, np.ones(4000, int)) == 1.0  # one class: nothing to fit


def test_expected_calibration_error_by_hand():
    # Two bins: scores 0.1 (1 fake of 2) and 0.9 (2 fakes of 2): |0.1 - 0.5| * 2/4 + |0.9 - 1| * 2/4 = 0.25
    error, table = reliability([0, 1, 1, 1], [0.1, 0.1, 0.9, 0.9])
    assert error == pytest.approx(0.25)
    assert [row["bin"] for row in table] == [1, 9]


# ------------------------------------------------------------------ aggregation


def test_confident_rule_averages_the_confident_fakes_when_there_are_enough():
    scores = np.array([0.9, 0.95, 0.85, 0.1, 0.5])  # 3 confident fakes: > 5 / 2.5 and >= min_fake_frames
    assert confident_mean(scores, RULE) == pytest.approx(0.9)


def test_confident_rule_averages_the_confident_reals_when_nearly_all_are():
    scores = np.array([0.05] * 19 + [0.5])  # 19 of 20 below 0.2: more than 90%
    assert confident_mean(scores, RULE) == pytest.approx(0.05)


def test_confident_rule_falls_back_to_the_mean():
    scores = np.array([0.9, 0.9, 0.1, 0.1, 0.1, 0.1, 0.5])  # 2 confident fakes: too few; 4 of 7 real: not 90%
    assert confident_mean(scores, RULE) == pytest.approx(scores.mean())
    many_fakes_too_few_frames = np.array([0.9, 0.9, 0.1])  # 2 of 3 frames fake but fewer than min_fake_frames
    assert confident_mean(many_fakes_too_few_frames, RULE) == pytest.approx(many_fakes_too_few_frames.mean())


def faces_table(rows):
    return pd.DataFrame(rows, columns=["video_id", "frame_index", "track", "p_fake"])


def test_a_frame_is_as_fake_as_its_most_fake_face():
    faces = faces_table([("v", 0, 0, 0.1), ("v", 0, 1, 0.7), ("v", 1, 0, 0.2)])
    frames = frame_scores(faces)
    assert frames["p_fake"].tolist() == [0.7, 0.2]


def test_max_track_takes_the_most_fake_person_and_ignores_short_tracks():
    params = AggregationParams(strategy="max_track", min_track_faces=3)
    faces = faces_table(
        [("v", i, 0, 0.1) for i in range(4)] + [("v", i, 1, 0.8) for i in range(3)] + [("v", 0, 2, 0.99)]
    )  # a one-frame false detection
    assert max_track_mean(faces, params) == pytest.approx(0.8)
    only_short = faces_table([("v", 0, 0, 0.3), ("v", 1, 1, 0.6)])
    assert max_track_mean(only_short, params) == pytest.approx(0.6)


def test_video_scores_report_every_strategy_and_use_the_chosen_one():
    faces = faces_table(
        [("a", i, 0, p) for i, p in enumerate([0.9, 0.9, 0.9, 0.1])]
        + [("b", i, 0, 0.1) for i in range(4)]
        + [("b", i, 1, 0.6) for i in range(4)]
    )
    table = video_scores(faces, AggregationParams(strategy="max_track", min_fake_frames=3)).set_index("video_id")
    assert table.loc["a", "mean"] == pytest.approx(0.7)
    assert table.loc["a", "confident"] == pytest.approx(0.9)
    assert table.loc["b", "mean"] == pytest.approx(0.6)  # each frame's most fake face
    assert table.loc["b", "max_track"] == pytest.approx(0.6)
    assert (table["p_fake"] == table["max_track"]).all()
    assert table.loc["b", "tracks"] == 2 and table.loc["b", "faces"] == 8 and table.loc["b", "frames_with_face"] == 4


def test_unknown_strategy_is_refused():
    with pytest.raises(ValueError, match="aggregate.strategy"):
        AggregationParams(strategy="median")


# ------------------------------------------------------------------ degradations


def test_degradations_keep_the_crop_shape_and_change_it():
    rng = np.random.default_rng(3)
    crop = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    for degraded in (stored(crop, 50), down_up(crop, 0.5), sharpen(crop, 1.5)):
        assert degraded.shape == crop.shape and degraded.dtype == np.uint8
        assert not np.array_equal(degraded, crop)
    smooth = np.full((64, 64, 3), 120, np.uint8)
    assert math.isclose(float(np.abs(down_up(smooth, 0.5).astype(int) - 120).max()), 0.0)
    assert np.array_equal(sharpen(smooth, 1.5), smooth)  # nothing to sharpen on a flat image


# ------------------------------------------------------------------ the whole evaluation on crops


class Brightness(torch.nn.Module):
    """A hand-made classifier: FAKE logit = mean pixel value (normalised input), REAL logit = 0."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(4.0))

    def forward(self, images):
        return torch.stack([torch.zeros(len(images)), self.scale * images.mean(dim=(1, 2, 3))], dim=1)

    def face_logits(self, crops, size, *, batch_size=16, flip=True):  # the scoring interface evaluation calls
        from deepfake.model.classifier import face_logits

        return face_logits(self, crops, size, batch_size=batch_size, flip=flip)


def crops_table(tmp_path, videos):
    """videos: (video_id, split, label_id, [grey level per frame]) -> a faces table and crop files."""
    import cv2

    rows = []
    for video_id, split, label, levels in videos:
        for frame, level in enumerate(levels):
            name = f"{video_id}_{frame}.png"
            cv2.imwrite(str(tmp_path / name), np.full((32, 32, 3), level, np.uint8))
            rows.append(
                {
                    "video_id": video_id,
                    "split": split,
                    "label_id": label,
                    "frame_index": frame,
                    "track": 0,
                    "crop": name,
                    "landmarks": "[]",
                }
            )
    return pd.DataFrame(rows)


def test_evaluate_takes_threshold_and_temperature_from_validation_only(tmp_path):
    from deepfake.config import EvaluateParams
    from deepfake.evaluation.evaluate import evaluate

    # Validation: reals dark, fakes bright. Test: everything brighter, so a threshold fitted on test would
    # differ; the reported one must be validation's.
    val = [(f"vr{i}", "val", 0, [40 + i] * 3) for i in range(3)] + [
        (f"vf{i}", "val", 1, [150 + i] * 3) for i in range(3)
    ]
    test = [(f"tr{i}", "test", 0, [140 + i] * 3) for i in range(3)] + [
        (f"tf{i}", "test", 1, [220 + i] * 3) for i in range(3)
    ]
    faces = crops_table(tmp_path, val + test)
    videos = pd.concat(
        [
            faces.drop_duplicates("video_id")[["video_id", "split", "label_id"]],
            pd.DataFrame([{"video_id": "noface", "split": "test", "label_id": 1}]),
        ]
    )
    params = EvaluateParams(flip=False, bootstrap=50, min_val_videos=3)
    result = evaluate(
        faces,
        videos,
        tmp_path,
        Brightness(),
        input_size=32,
        aggregation=AggregationParams(strategy="mean"),
        params=params,
    )
    metrics = result.metrics
    val_scores = result.scores[result.scores["split"] == "val"].set_index("video_id")["p_fake"]
    highest_real, lowest_fake = (
        val_scores[[f"vr{i}" for i in range(3)]].max(),
        val_scores[[f"vf{i}" for i in range(3)]].min(),
    )
    assert highest_real < metrics["video"]["threshold"] < lowest_fake
    assert metrics["video"]["threshold_source"].startswith("validation")
    assert metrics["video"]["auc"] == 1.0  # test is perfectly ranked...
    assert metrics["video"]["confusion"]["fp"] == 3  # ...but validation's threshold calls the brighter reals fake
    assert metrics["video"]["no_face_videos"] == 1 and metrics["video"]["count"] == 6  # reported, not scored
    assert metrics["calibration"]["fitted_on"] == "val faces" and metrics["calibration"]["temperature"] > 0
    assert set(metrics["robustness"]) == {"clean", "jpeg50", "downscale0.5", "sharpen1.5"}

    few = evaluate(
        faces,
        videos,
        tmp_path,
        Brightness(),
        input_size=32,
        aggregation=AggregationParams(strategy="mean"),
        params=EvaluateParams(flip=False, bootstrap=0, min_val_videos=4, no_face_score=0.5),
    )
    assert (
        few.metrics["video"]["threshold"] == 0.5
        and "fewer than evaluate.min_val_videos" in few.metrics["video"]["threshold_source"]
    )
    assert few.metrics["calibration"]["temperature"] == 1.0
    assert few.metrics["video"]["count"] == 7  # the video without a face scored as asked


def test_calibration_is_fitted_only_where_validation_informs_it():
    from deepfake.config import EvaluateParams
    from deepfake.evaluation.evaluate import calibration_decision

    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 200)
    params = EvaluateParams()

    informative = (labels * 2 - 1) * 3.0 + rng.normal(0, 2, 400)
    temperature, fitted_on, usable, auc = calibration_decision(
        informative, labels, enough=True, too_few="", params=params
    )
    assert fitted_on == "val faces" and usable and auc > 0.9 and temperature != 1.0

    noise = rng.normal(0, 1, 400)
    temperature, fitted_on, usable, auc = calibration_decision(noise, labels, enough=True, too_few="", params=params)
    assert temperature == 1.0 and not usable and auc < params.min_val_auc
    assert "does not separate the validation faces" in fitted_on and "evaluate.min_val_auc = 0.6" in fitted_on

    # Huge logits that are right only 70% of the time: the log loss keeps falling as T grows, to the bound.
    signs = np.where(rng.random(400) < 0.7, labels * 2 - 1, 1 - labels * 2)
    temperature, fitted_on, usable, _ = calibration_decision(
        signs * 100.0, labels, enough=True, too_few="", params=params
    )
    assert temperature == 1.0 and usable and "ran to its bound" in fitted_on

    temperature, fitted_on, usable, auc = calibration_decision(
        informative, labels, enough=False, too_few="default: too few videos", params=params
    )
    assert (temperature, usable, auc) == (1.0, False, None) and fitted_on == "nothing, T = 1 default: too few videos"
