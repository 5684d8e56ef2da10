"""DVC stage `train`: fit the face classifier on the faces table; write the weights and the history; track in MLflow."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pandas as pd

from deepfake.atomic import write_csv, write_json
from deepfake.config import Config
from deepfake.model.training import fit, save_model, with_media_kind
from deepfake.tracking import connect, dvc_output_hash, flatten, git_commit, start_run
from stages import run


def main(config: Config) -> None:
    import mlflow

    paths, model, train = config.paths, config.model, config.train
    if train.processes > 1 and "LOCAL_RANK" not in os.environ:
        # torchrun starts `processes` copies of this stage, which train together under DDP.
        os.execv(
            sys.executable,
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                f"--nproc-per-node={train.processes}",
                "-m",
                "stages.train",
            ],
        )
    main_process = int(os.environ.get("RANK", "0")) == 0  # under torchrun, rank 0 alone logs and writes
    if main_process:
        connect()  # before training: an unreachable tracking server fails now, not after an hour of epochs
    faces = with_media_kind(pd.read_csv(paths.faces_table), pd.read_csv(paths.videos_table))
    result = fit(faces, paths.faces, model, train, checkpoint=paths.checkpoint)
    if not main_process:
        return  # the other processes of a DDP run hold the same weights
    save_model(result.model, paths.model_file)
    Path(paths.checkpoint).unlink(missing_ok=True)  # finished: a rerun starts afresh
    history_path = f"{paths.reports}/history.csv"
    write_csv(result.history, history_path)
    summary = {
        "backbone": model.backbone,
        "input_size": model.input_size,
        "dropout": model.dropout,
        "weights_requested": result.origin.requested,
        "weights_used": result.origin.used,
        "weights_source": result.origin.source,
        "best_epoch": result.best_epoch,
        "averaged_epochs": result.averaged_epochs,
        "kept": result.kept,
        "epochs_run": len(result.history),
        "resumed_from_epoch": result.resumed_from,
        **result.validation,  # of the weights kept
        "selected_by": config.train.select_by,
        "images_per_s": float(result.history["images_per_s"].median()),
    }
    tags = {
        "git_commit": git_commit(),
        "faces_data_md5": dvc_output_hash(paths.faces),
        "backbone": model.backbone,
        "weights": result.origin.describe(),
    }
    with start_run(run_name=f"{model.backbone}-{tags['faces_data_md5'][:8]}", tags=tags) as mlflow_run:
        mlflow.log_params({k: str(v) for k, v in flatten(config.to_dict()).items()})
        for row in result.history.to_dict("records"):
            epoch = int(row.pop("epoch"))
            mlflow.log_metrics({k: float(v) for k, v in row.items() if pd.notna(v)}, step=epoch)
        mlflow.log_metrics(
            {
                "best_epoch": result.best_epoch,
                **{f"kept_{key}": float(value) for key, value in result.validation.items()},
            }
        )
        mlflow.log_artifact(history_path)
        summary["mlflow_run_id"] = mlflow_run.info.run_id
    write_json(summary, f"{paths.reports}/train.json")
    print(
        f"train: kept {result.kept} of {len(result.history)} (best by {config.train.select_by}: {result.best_epoch}), "
        f"val auc {result.validation['val_auc']:.3f}, blend auc {result.validation['val_blend_auc']:.3f}; "
        f"weights {result.origin.describe()}; wrote {paths.model_file}, {history_path}, {paths.reports}/train.json; "
        f"MLflow run {mlflow_run.info.run_id}"
    )


if __name__ == "__main__":
    run("train", main)
