"""Scoring a trained model on the test split: face, frame and video metrics, calibration and robustness.

Everything the decision depends on is taken from the validation split: the temperature that calibrates
P(fake), and the threshold at each level. The test split is only measured.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from deepfake.config import STRATEGIES, AggregationParams, EvaluateParams
from deepfake.errors import DataError
from deepfake.evaluation.aggregate import frame_scores, video_scores
from deepfake.evaluation.metrics import (
    at_bound,
    bootstrap_auc,
    choose_threshold,
    classification_metrics,
    fit_temperature,
    reliability,
)
from deepfake.images import down_up, read_image, sharpen, stored
from deepfake.model.scores import FaceClassifier, p_fake

logger = logging.getLogger(__name__)

LEVELS = ("face", "frame", "video")


def degradations(params: EvaluateParams) -> dict:
    return {
        "clean": None,
        f"jpeg{params.jpeg_quality}": lambda crop: stored(crop, params.jpeg_quality),
        f"downscale{params.downscale:g}": lambda crop: down_up(crop, params.downscale),
        f"sharpen{params.sharpen:g}": lambda crop: sharpen(crop, params.sharpen),
    }


def crop_logits(
    model: FaceClassifier,
    crops: list[str],
    faces_dir: str | os.PathLike,
    size: int,
    params: EvaluateParams,
    degrade=None,
) -> np.ndarray:
    """Logits for crop files, read a batch at a time so a large test split never sits in memory."""
    out = []
    for start in range(0, len(crops), params.batch_size):
        images = [read_image(Path(faces_dir) / name) for name in crops[start : start + params.batch_size]]
        images = [degrade(image) for image in images] if degrade else images
        out.append(model.face_logits(images, size, batch_size=params.batch_size, flip=params.flip))
    return np.concatenate(out) if out else np.zeros(0)


@dataclass
class Scored:
    """One split's scores at every level, P(fake) already calibrated."""

    faces: pd.DataFrame
    frames: pd.DataFrame
    videos: pd.DataFrame

    def level(self, name: str) -> pd.DataFrame:
        return {"face": self.faces, "frame": self.frames, "video": self.videos}[name]


def score_split(faces: pd.DataFrame, logits: np.ndarray, temperature: float, aggregation: AggregationParams) -> Scored:
    faces = faces.assign(logit=logits, p_fake=p_fake(logits, temperature))
    labels = faces.groupby("video_id")["label_id"].first()
    frames = frame_scores(faces).join(labels, on="video_id")
    videos = video_scores(faces, aggregation).join(labels, on="video_id")
    return Scored(faces, frames, videos)


@dataclass
class Evaluation:
    metrics: dict
    scores: pd.DataFrame  # val and test videos with the score under every strategy
    test: Scored
    robustness: pd.DataFrame
    reliability: dict = field(default_factory=dict)  # "{face,video}_{before,after}": test ECE tables


def evaluate(
    faces: pd.DataFrame,
    videos: pd.DataFrame,
    faces_dir: str | os.PathLike,
    model: FaceClassifier,
    *,
    input_size: int,
    aggregation: AggregationParams,
    params: EvaluateParams,
) -> Evaluation:
    """Score the validation and test faces, choose temperature and thresholds on validation, measure test.

    Only videos count: photos (training material, all of one label) have no video verdict, and in the
    validation split they would fit the temperature to "photo or video" rather than "real or fake".
    """
    if "kind" in videos:
        faces = faces[~faces["video_id"].isin(videos.loc[videos["kind"] == "photo", "video_id"])]
        videos = videos[videos["kind"] != "photo"]
    split_faces = {split: faces[faces["split"] == split].reset_index(drop=True) for split in ("val", "test")}
    if split_faces["test"].empty:
        raise DataError("the test split has no face crops to evaluate (see data/faces/report.csv)")
    logits = {}
    for name, degrade in degradations(params).items():
        splits = ("val", "test") if degrade is None else ("test",)
        for split in splits:
            logger.info("scoring %d %s faces (%s)", len(split_faces[split]), split, name)
            logits[split, name] = crop_logits(
                model, list(split_faces[split]["crop"]), faces_dir, input_size, params, degrade
            )

    val_labels = split_faces["val"]["label_id"].to_numpy()
    per_class = split_faces["val"].groupby("label_id")["video_id"].nunique().reindex([0, 1], fill_value=0)
    enough = bool((per_class >= params.min_val_videos).all())
    too_few = (
        f"default: the validation split has {per_class[0]} REAL and {per_class[1]} FAKE videos with faces, "
        f"fewer than evaluate.min_val_videos = {params.min_val_videos} of each"
    )
    temperature, fitted_on, informative, val_auc = calibration_decision(
        logits["val", "clean"], val_labels, enough=enough, too_few=too_few, params=params
    )
    why_default = fitted_on.removeprefix("nothing, T = 1 ")  # where thresholds fall back to 0.5
    val = score_split(split_faces["val"], logits["val", "clean"], temperature, aggregation)
    test = score_split(split_faces["test"], logits["test", "clean"], temperature, aggregation)
    raw_test = score_split(split_faces["test"], logits["test", "clean"], 1.0, aggregation)
    no_face = sorted(set(videos.loc[videos["split"] == "test", "video_id"]) - set(test.videos["video_id"]))
    if params.no_face_score is not None and no_face:
        extra = videos[videos["video_id"].isin(no_face)][["video_id", "label_id"]].assign(
            **{strategy: params.no_face_score for strategy in (*STRATEGIES, "p_fake")},
            frames_with_face=0,
            faces=0,
            tracks=0,
        )
        test.videos = pd.concat([test.videos, extra], ignore_index=True)

    metrics: dict = {"strategy": aggregation.strategy}
    for level in LEVELS:
        threshold, source = (
            choose_threshold(val.level(level)["label_id"], val.level(level)["p_fake"])
            if informative
            else (0.5, f"0.5 {why_default}")
        )
        table = test.level(level)
        metrics[level] = classification_metrics(table["label_id"], table["p_fake"], threshold)
        metrics[level]["threshold_source"] = source
    low, high = bootstrap_auc(test.videos["label_id"], test.videos["p_fake"], rounds=params.bootstrap, seed=params.seed)
    metrics["video"].update(auc_ci_low=low, auc_ci_high=high)
    metrics["video"]["no_face_videos"] = len(no_face)
    metrics["video"]["no_face_scored_as"] = params.no_face_score

    metrics["strategies"] = {}
    for strategy in STRATEGIES:
        threshold = choose_threshold(val.videos["label_id"], val.videos[strategy])[0] if informative else 0.5
        result = classification_metrics(test.videos["label_id"], test.videos[strategy], threshold)
        metrics["strategies"][strategy] = {
            k: result.get(k) for k in ("auc", "accuracy", "balanced_accuracy", "log_loss", "threshold")
        }

    ece_before, table_before = reliability(raw_test.videos["label_id"], raw_test.videos["p_fake"])
    ece_after, table_after = reliability(test.videos["label_id"], test.videos["p_fake"])
    face_before, face_table_before = reliability(raw_test.faces["label_id"], raw_test.faces["p_fake"])
    face_after, face_table_after = reliability(test.faces["label_id"], test.faces["p_fake"])
    metrics["calibration"] = {
        "temperature": temperature,
        "fitted_on": fitted_on,
        "validation_face_auc": val_auc,
        "validation_informative": informative,
        "ece_face_before": face_before,
        "ece_face_after": face_after,
        "ece_video_before": ece_before,
        "ece_video_after": ece_after,
    }

    rows = []
    for name in degradations(params):
        scored = (
            test
            if name == "clean"
            else score_split(split_faces["test"], logits["test", name], temperature, aggregation)
        )
        face = classification_metrics(scored.faces["label_id"], scored.faces["p_fake"], metrics["face"]["threshold"])
        video = classification_metrics(
            scored.videos["label_id"], scored.videos["p_fake"], metrics["video"]["threshold"]
        )
        rows.append(
            {
                "condition": name,
                "face_auc": face.get("auc"),
                "face_accuracy": face.get("accuracy"),
                "video_auc": video.get("auc"),
                "video_accuracy": video.get("accuracy"),
                "video_log_loss": video.get("log_loss"),
            }
        )
    robustness = pd.DataFrame(rows)
    metrics["robustness"] = {row.pop("condition"): row for row in robustness.to_dict("records")}

    scores = pd.concat([val.videos.assign(split="val"), test.videos.assign(split="test")], ignore_index=True)
    tables = {
        "face_before": face_table_before,
        "face_after": face_table_after,
        "video_before": table_before,
        "video_after": table_after,
    }
    return Evaluation(metrics, scores, test, robustness, tables)


def calibration_decision(
    logits: np.ndarray, labels: np.ndarray, *, enough: bool, too_few: str, params: EvaluateParams
) -> tuple[float, str, bool, float | None]:
    """(temperature, what it was fitted on or why it is 1, whether validation informs thresholds, val face AUC).

    A temperature and thresholds fitted where the model does not separate the classes are noise that ships:
    a temperature driven to its bound makes every P(fake) about 0.5. So T stays 1 (and thresholds 0.5) when
    validation is too small or its face AUC is below evaluate.min_val_auc, and T stays 1 when the fit runs to a
    bound; the reason is recorded in the metrics and the model card.
    """
    from sklearn.metrics import roc_auc_score

    if not enough:
        return 1.0, f"nothing, T = 1 {too_few}", False, None
    auc = float(roc_auc_score(labels, logits))
    if auc < params.min_val_auc:
        reason = (
            f"nothing, T = 1 default: the model does not separate the validation faces (AUC {auc:.3f} < "
            f"evaluate.min_val_auc = {params.min_val_auc})"
        )
        return 1.0, reason, False, auc
    if not params.calibrate:
        return 1.0, "nothing: evaluate.calibrate is false", True, auc
    temperature = fit_temperature(logits, labels)
    if at_bound(temperature):
        reason = (
            f"nothing, T = 1: the fit on the validation faces ran to its bound (T = {temperature:.3g}), "
            "so it is not used"
        )
        logger.warning("calibration: %s", reason)
        return 1.0, reason, True, auc
    return temperature, "val faces", True, auc


def roc_points(labels: np.ndarray, scores: np.ndarray) -> pd.DataFrame:
    from sklearn.metrics import roc_curve

    if len(np.unique(labels)) < 2:
        return pd.DataFrame(columns=["fpr", "tpr", "threshold"])
    fpr, tpr, thresholds = roc_curve(labels, scores)
    return pd.DataFrame({"fpr": fpr, "tpr": tpr, "threshold": np.minimum(thresholds, 1.0)})
