"""DVC stage `train`: fit the face classifier on the faces table; write the weights and the history; track in MLflow."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pandas as pd

from deepfake.atomic import write_csv, write_json
from deepfake.models import WeightsUnavailable
from deepfake.params import load_params
from deepfake.registry import RegistryError, connect, dvc_output_hash, flatten, git_commit, start_run
from deepfake.train import TrainParams, fit, save_model

FACES_TABLE = "data/faces/faces.csv"
FACES_DIR = "data/faces"
CHECKPOINT = "models/checkpoint.pt"  # not a DVC output: it must survive a killed run to be resumed from


def main() -> None:
    import mlflow

    params = load_params()
    train = TrainParams(**params["model"], **params["train"])
    if train.processes > 1 and "LOCAL_RANK" not in os.environ:
        # torchrun starts `processes` copies of this stage, which train together under DDP.
        os.execv(sys.executable, [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                  f"--nproc-per-node={train.processes}", "-m", "stages.train"])
    main_process = int(os.environ.get("RANK", "0")) == 0  # under torchrun, rank 0 alone logs and writes
    try:
        if main_process:
            connect()  # before training: an unreachable tracking server fails now, not after an hour of epochs
        result = fit(pd.read_csv(FACES_TABLE), FACES_DIR, train, checkpoint=CHECKPOINT)
    except (WeightsUnavailable, RegistryError, ValueError) as error:
        raise SystemExit(f"train: {error}") from None
    if not main_process:
        return  # the other processes of a DDP run hold the same weights
    save_model(result.model, "models/model.pt")
    Path(CHECKPOINT).unlink(missing_ok=True)  # finished: a rerun starts afresh
    write_csv(result.history, "reports/history.csv")
    best = result.history.iloc[result.best_epoch - 1]
    summary = {
        "backbone": train.backbone, "input_size": train.input_size, "dropout": train.dropout,
        "weights_requested": result.origin.requested, "weights_used": result.origin.used,
        "weights_source": result.origin.source, "best_epoch": result.best_epoch,
        "epochs_run": len(result.history), "resumed_from_epoch": result.resumed_from,
        "val_loss": best["val_loss"], "val_accuracy": best["val_accuracy"], "val_auc": best["val_auc"],
        "images_per_s": float(result.history["images_per_s"].median()),
    }
    tags = {"git_commit": git_commit(), "faces_data_md5": dvc_output_hash(FACES_DIR), "backbone": train.backbone,
            "weights": result.origin.describe()}
    with start_run(run_name=f"{train.backbone}-{tags['faces_data_md5'][:8]}", tags=tags) as run:
        mlflow.log_params({k: str(v) for k, v in flatten(params).items()})
        for row in result.history.to_dict("records"):
            epoch = int(row.pop("epoch"))
            mlflow.log_metrics({k: float(v) for k, v in row.items() if pd.notna(v)}, step=epoch)
        mlflow.log_metrics({"best_epoch": result.best_epoch, "best_val_loss": float(best["val_loss"]),
                            "best_val_auc": float(best["val_auc"]) if pd.notna(best["val_auc"]) else float("nan")})
        mlflow.log_artifact("reports/history.csv")
        summary["mlflow_run_id"] = run.info.run_id
    write_json(summary, "reports/train.json")
    print(f"train: best epoch {result.best_epoch} of {len(result.history)}, val auc {best['val_auc']:.3f}; "
          f"weights {result.origin.describe()}; wrote models/model.pt, reports/history.csv, reports/train.json; "
          f"MLflow run {run.info.run_id}")


if __name__ == "__main__":
    main()
