"""DVC stage `register`: log the video-level model to MLflow, register a version, and run the promotion gate."""

from __future__ import annotations

import json

import pandas as pd

from deepfake.aggregate import AggregationParams
from deepfake.atomic import write_json
from deepfake.card import model_card
from deepfake.detector import DetectorConfig
from deepfake.faces import FaceParams
from deepfake.frames import FrameSampling
from deepfake.params import load_params
from deepfake.registry import (RegistryError, connect, dvc_output_hash, gate, git_commit, log_detector, start_run,
                               tag_metrics)

MODEL = "models/model.pt"
REPORTS = "reports"


def metric_at(metrics: dict, dotted: str):
    value = metrics
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            raise SystemExit(f"register: register.gate_metric {dotted!r} is not in {REPORTS}/metrics.json")
        value = value[part]
    return value


def main() -> None:
    import mlflow

    params = load_params()
    register = params["register"]
    train = json.loads(open(f"{REPORTS}/train.json").read())
    metrics = json.loads(open(f"{REPORTS}/metrics.json").read())
    faces = dict(params["faces"])
    faces.pop("jpeg_quality")
    config = DetectorConfig(
        backbone=train["backbone"], input_size=train["input_size"], temperature=metrics["calibration"]["temperature"],
        threshold=metrics["video"]["threshold"], flip=params["evaluate"]["flip"], batch_size=params["evaluate"]["batch_size"],
        sampling=FrameSampling(per_video=params["frames"]["per_video"], per_second=params["frames"]["per_second"]),
        faces=FaceParams(**faces), aggregation=AggregationParams(**params["aggregate"]),
    )
    videos = pd.read_csv("data/interim/videos.csv")
    data = {"videos": len(videos), "faces_md5": dvc_output_hash("data/faces"), "git_commit": git_commit(),
            "split_counts": ", ".join(f"{split} {len(group)}" for split, group in videos.groupby("split"))}
    card = model_card(name=register["name"], train=train, metrics=metrics, params=params, data=data)
    value = metric_at(metrics, register["gate_metric"])
    try:
        connect()
        with start_run(metrics.get("mlflow_run_id") or train.get("mlflow_run_id"), run_name="register"):
            info = log_detector(MODEL, config, card)
            mlflow.log_text(card, "model_card.md")
        version = mlflow.register_model(info.model_uri, register["name"]).version
        tag_metrics(register["name"], version, metrics)
        decision = gate(register["name"], version, register["gate_metric"], value,
                        min_improvement=register["min_improvement"])
    except RegistryError as error:
        raise SystemExit(f"register: {error}") from None
    report = {"name": register["name"], "model_uri": f"models:/{register['name']}/{version}", **decision.to_dict()}
    write_json(report, f"{REPORTS}/promotion.json")
    print(f"register: {register['name']} version {version} -> @{decision.alias} ({decision.reason})")


if __name__ == "__main__":
    main()
