"""DVC stage `train`: fit the face classifier on the faces table; write the weights and the history."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from deepfake.atomic import write_csv, write_json
from deepfake.models import WeightsUnavailable
from deepfake.params import load_params
from deepfake.train import TrainParams, fit, save_model

FACES_TABLE = "data/faces/faces.csv"
FACES_DIR = "data/faces"
CHECKPOINT = "models/checkpoint.pt"  # not a DVC output: it must survive a killed run to be resumed from


def main() -> None:
    params = load_params()
    train = TrainParams(**params["model"], **params["train"])
    try:
        result = fit(pd.read_csv(FACES_TABLE), FACES_DIR, train, checkpoint=CHECKPOINT)
    except (WeightsUnavailable, ValueError) as error:
        raise SystemExit(f"train: {error}") from None
    save_model(result.model, "models/model.pt")
    Path(CHECKPOINT).unlink(missing_ok=True)  # finished: a rerun starts afresh
    write_csv(result.history, "reports/history.csv")
    best = result.history.iloc[result.best_epoch - 1]
    write_json({
        "backbone": train.backbone, "input_size": train.input_size, "dropout": train.dropout,
        "weights_requested": result.origin.requested, "weights_used": result.origin.used,
        "weights_source": result.origin.source, "best_epoch": result.best_epoch,
        "epochs_run": len(result.history), "resumed_from_epoch": result.resumed_from,
        "val_loss": best["val_loss"], "val_accuracy": best["val_accuracy"], "val_auc": best["val_auc"],
        "images_per_s": float(result.history["images_per_s"].median()),
    }, "reports/train.json")
    print(f"train: best epoch {result.best_epoch} of {len(result.history)}, val auc {best['val_auc']:.3f}; "
          f"weights {result.origin.describe()}; wrote models/model.pt, reports/history.csv, reports/train.json")


if __name__ == "__main__":
    main()
