"""DVC stage `register`: log the video-level model to MLflow, register a version, and run the promotion gate."""

from __future__ import annotations

import json

import pandas as pd

from deepfake.atomic import write_json
from deepfake.config import Config
from deepfake.errors import ConfigError
from deepfake.evaluation.card import model_card
from deepfake.serving.video_detector import DetectorConfig
from deepfake.tracking import (
    connect,
    dvc_output_hash,
    gate,
    git_commit,
    log_detector,
    start_run,
    tag_metrics,
)
from stages import run


def metric_at(metrics: dict, dotted: str, source: str):
    value = metrics
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            raise ConfigError(f"register.gate_metric {dotted!r} is not in {source}")
        value = value[part]
    return value


def main(config: Config) -> None:
    import mlflow

    paths, register = config.paths, config.register
    connect()  # an unreachable tracking server fails now, before any work
    train = json.loads(open(f"{paths.reports}/train.json").read())
    metrics_path = f"{paths.reports}/metrics.json"
    metrics = json.loads(open(metrics_path).read())
    detector = DetectorConfig(
        backbone=train["backbone"],
        input_size=train["input_size"],
        temperature=metrics["calibration"]["temperature"],
        threshold=metrics["video"]["threshold"],
        flip=config.evaluate.flip,
        batch_size=config.evaluate.batch_size,
        runtime=config.evaluate.runtime,
        sampling=config.frames,
        faces=config.faces,
        aggregation=config.aggregate,
    )
    videos = pd.read_csv(paths.videos_table)
    data = {
        "videos": len(videos),
        "faces_md5": dvc_output_hash(paths.faces),
        "git_commit": git_commit(),
        "split_counts": ", ".join(f"{split} {len(group)}" for split, group in videos.groupby("split")),
    }
    card = model_card(name=register.name, train=train, metrics=metrics, params=config.to_dict(), data=data)
    value = metric_at(metrics, register.gate_metric, metrics_path)
    with start_run(metrics.get("mlflow_run_id") or train.get("mlflow_run_id"), run_name="register"):
        info = log_detector(paths.model_file, detector.to_dict(), card)
        mlflow.log_text(card, "model_card.md")
    version = mlflow.register_model(info.model_uri, register.name).version
    tag_metrics(register.name, version, metrics)
    decision = gate(register.name, version, register.gate_metric, value, min_improvement=register.min_improvement)
    report = {"name": register.name, "model_uri": f"models:/{register.name}/{version}", **decision.to_dict()}
    write_json(report, f"{paths.reports}/promotion.json")
    print(f"register: {register.name} version {version} -> @{decision.alias} ({decision.reason})")


if __name__ == "__main__":
    run("register", main)
