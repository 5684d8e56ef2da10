"""DVC stage `evaluate`: score the test split with the trained model; metrics, plots, calibration, robustness."""

from __future__ import annotations

import json
import math

import pandas as pd

from deepfake.aggregate import AggregationParams
from deepfake.atomic import write_csv, write_json
from deepfake.evaluate import EvaluateParams, evaluate, roc_points
from deepfake.figures import confusion_figure, history_figure, reliability_figure, roc_figure
from deepfake.models import WeightsUnavailable, load_classifier
from deepfake.params import load_params
from deepfake.registry import RegistryError, connect, flatten, numeric, start_run

VIDEOS_TABLE = "data/interim/videos.csv"
FACES_TABLE = "data/faces/faces.csv"
FACES_DIR = "data/faces"
MODEL = "models/model.pt"
REPORTS = "reports"


def finite(value):
    """NaN and infinities are not JSON: written as null."""
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def main() -> None:
    import mlflow

    params = load_params()
    try:
        connect()
        model = load_classifier(MODEL, params["model"]["backbone"])
        result = evaluate(pd.read_csv(FACES_TABLE), pd.read_csv(VIDEOS_TABLE), FACES_DIR, model,
                          input_size=params["model"]["input_size"], aggregation=AggregationParams(**params["aggregate"]),
                          params=EvaluateParams(**params["evaluate"]))
    except (WeightsUnavailable, RegistryError, ValueError, OSError) as error:
        raise SystemExit(f"evaluate: {error}") from None

    metrics = result.metrics
    write_csv(result.scores, f"{REPORTS}/scores/videos.csv")
    write_csv(result.test.faces.drop(columns=["landmarks"]), f"{REPORTS}/scores/test_faces.csv")
    write_csv(result.robustness, f"{REPORTS}/robustness.csv")
    write_json(result.reliability, f"{REPORTS}/calibration.json")

    # DVC plots: the ROC at every level and one row per test video for the confusion matrix.
    curves = {level: (roc_points(result.test.level(level)["label_id"], result.test.level(level)["p_fake"]),
                      metrics[level].get("auc")) for level in ("face", "frame", "video")}
    for level, (points, _) in curves.items():
        write_csv(points, f"{REPORTS}/plots/roc_{level}.csv")
    videos = result.test.videos
    threshold = metrics["video"]["threshold"]
    names = {0: "REAL", 1: "FAKE"}
    write_csv(pd.DataFrame({"actual": videos["label_id"].map(names),
                            "predicted": (videos["p_fake"] >= threshold).astype(int).map(names)}),
              f"{REPORTS}/plots/confusion.csv")

    roc_figure(curves, f"{REPORTS}/figures/roc.png")
    confusion_figure(metrics["video"]["confusion"], threshold, f"{REPORTS}/figures/confusion.png")
    reliability_figure(result.reliability["face_before"], result.reliability["face_after"],
                       metrics["calibration"]["temperature"], f"{REPORTS}/figures/reliability.png")
    history_figure(pd.read_csv(f"{REPORTS}/history.csv"), f"{REPORTS}/figures/history.png")

    # Into the training run, so one run holds the curves, the test metrics and the figures.
    run_id = json.loads(open(f"{REPORTS}/train.json").read()).get("mlflow_run_id")
    with start_run(run_id, run_name="evaluate") as run:
        mlflow.log_metrics(numeric(flatten(finite(metrics), "test.")))
        mlflow.log_params({k: str(v) for k, v in flatten({"aggregate": params["aggregate"], "evaluate": params["evaluate"]}).items()
                           if k not in run.data.params})
        mlflow.log_dict(finite(metrics), "metrics.json")
        for path in ("robustness.csv", "calibration.json", "figures", "plots"):
            target = f"{REPORTS}/{path}"
            mlflow.log_artifacts(target, path) if path in ("figures", "plots") else mlflow.log_artifact(target)
        metrics["mlflow_run_id"] = run.info.run_id  # the register stage logs the model into this run
    write_json(finite(metrics), f"{REPORTS}/metrics.json")

    video = metrics["video"]
    auc = "n/a" if video.get("auc") is None else f"{video['auc']:.3f}"
    interval = "" if video.get("auc_ci_low") is None else f" (95% CI {video['auc_ci_low']:.3f}-{video['auc_ci_high']:.3f})"
    print(f"evaluate: {video['count']} test videos, video AUC {auc}{interval}, accuracy {video['accuracy']:.3f} at "
          f"threshold {threshold:.3f} ({video['threshold_source']}); {video['no_face_videos']} without a face; "
          f"temperature {metrics['calibration']['temperature']:.2f}; wrote {REPORTS}/metrics.json and figures")
    print(json.dumps(finite(metrics["robustness"]), indent=None))


if __name__ == "__main__":
    main()
