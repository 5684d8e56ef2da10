"""DVC stage `evaluate`: score the test split with the trained model; metrics, plots, calibration, robustness."""

from __future__ import annotations

import dataclasses
import json
import math

import pandas as pd

from deepfake.atomic import write_csv, write_json
from deepfake.config import Config
from deepfake.evaluation.evaluate import evaluate, roc_points
from deepfake.evaluation.figures import (
    confusion_figure,
    history_figure,
    reliability_figure,
    roc_figure,
)
from deepfake.model.onnx_classifier import load_face_classifier
from deepfake.tracking import connect, flatten, numeric, start_run
from stages import run


def finite(value):
    """NaN and infinities are not JSON: written as null."""
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def main(config: Config) -> None:
    import mlflow

    paths = config.paths
    reports = paths.reports
    connect()
    model = load_face_classifier(
        paths.model_file, config.model.backbone, config.model.input_size, config.evaluate.runtime
    )
    result = evaluate(
        pd.read_csv(paths.faces_table),
        pd.read_csv(paths.videos_table),
        paths.faces,
        model,
        input_size=config.model.input_size,
        aggregation=config.aggregate,
        params=config.evaluate,
    )

    metrics = result.metrics
    write_csv(result.scores, f"{reports}/scores/videos.csv")
    write_csv(result.test.faces.drop(columns=["landmarks"]), f"{reports}/scores/test_faces.csv")
    write_csv(result.robustness, f"{reports}/robustness.csv")
    write_json(result.reliability, f"{reports}/calibration.json")

    # DVC plots: the ROC at every level and one row per test video for the confusion matrix.
    curves = {
        level: (
            roc_points(result.test.level(level)["label_id"], result.test.level(level)["p_fake"]),
            metrics[level].get("auc"),
        )
        for level in ("face", "frame", "video")
    }
    for level, (points, _) in curves.items():
        write_csv(points, f"{reports}/plots/roc_{level}.csv")
    videos = result.test.videos
    threshold = metrics["video"]["threshold"]
    names = {0: "REAL", 1: "FAKE"}
    write_csv(
        pd.DataFrame(
            {
                "actual": videos["label_id"].map(names),
                "predicted": (videos["p_fake"] >= threshold).astype(int).map(names),
            }
        ),
        f"{reports}/plots/confusion.csv",
    )

    roc_figure(curves, f"{reports}/figures/roc.png")
    confusion_figure(metrics["video"]["confusion"], threshold, f"{reports}/figures/confusion.png")
    reliability_figure(
        result.reliability["face_before"],
        result.reliability["face_after"],
        metrics["calibration"]["temperature"],
        f"{reports}/figures/reliability.png",
    )
    history_figure(pd.read_csv(f"{reports}/history.csv"), f"{reports}/figures/history.png")

    # Into the training run, so one run holds the curves, the test metrics and the figures.
    run_id = json.loads(open(f"{reports}/train.json").read()).get("mlflow_run_id")
    with start_run(run_id, run_name="evaluate") as mlflow_run:
        mlflow.log_metrics(numeric(flatten(finite(metrics), "test.")))
        settings = {"aggregate": dataclasses.asdict(config.aggregate), "evaluate": dataclasses.asdict(config.evaluate)}
        mlflow.log_params({k: str(v) for k, v in flatten(settings).items() if k not in mlflow_run.data.params})
        mlflow.log_dict(finite(metrics), "metrics.json")
        for path in ("robustness.csv", "calibration.json", "figures", "plots"):
            target = f"{reports}/{path}"
            mlflow.log_artifacts(target, path) if path in ("figures", "plots") else mlflow.log_artifact(target)
        metrics["mlflow_run_id"] = mlflow_run.info.run_id  # the register stage logs the model into this run
    write_json(finite(metrics), f"{reports}/metrics.json")

    video = metrics["video"]
    auc = "n/a" if video.get("auc") is None else f"{video['auc']:.3f}"
    interval = (
        "" if video.get("auc_ci_low") is None else f" (95% CI {video['auc_ci_low']:.3f}-{video['auc_ci_high']:.3f})"
    )
    print(
        f"evaluate: {video['count']} test videos, video AUC {auc}{interval}, accuracy {video['accuracy']:.3f} at "
        f"threshold {threshold:.3f} ({video['threshold_source']}); {video['no_face_videos']} without a face; "
        f"temperature {metrics['calibration']['temperature']:.2f}; wrote {reports}/metrics.json and figures"
    )
    print(json.dumps(finite(metrics["robustness"]), indent=None))


if __name__ == "__main__":
    run("evaluate", main)
