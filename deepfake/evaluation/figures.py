"""PNG figures a person can open: ROC curves, confusion matrix, reliability diagram, training curves."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from deepfake.atomic import atomic_path


def _save(figure, target: str | os.PathLike) -> None:
    with atomic_path(target) as tmp:
        figure.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)


def roc_figure(curves: dict[str, tuple[pd.DataFrame, float | None]], target) -> None:
    """curves: level -> (fpr/tpr points, AUC)."""
    figure, axes = plt.subplots(figsize=(4.5, 4.5))
    for level, (points, auc) in curves.items():
        if len(points):
            axes.plot(points["fpr"], points["tpr"], label=f"{level} (AUC {auc:.3f})" if auc is not None else level)
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    axes.set(
        xlabel="false positive rate (real called fake)",
        ylabel="true positive rate (fakes caught)",
        title="ROC on the test split",
        xlim=(0, 1),
        ylim=(0, 1.01),
    )
    axes.legend(loc="lower right")
    _save(figure, target)


def confusion_figure(confusion: dict, threshold: float, target) -> None:
    matrix = np.array([[confusion["tn"], confusion["fp"]], [confusion["fn"], confusion["tp"]]])
    figure, axes = plt.subplots(figsize=(3.8, 3.5))
    axes.imshow(matrix, cmap="Blues")
    for (row, column), count in np.ndenumerate(matrix):
        axes.text(
            column,
            row,
            str(count),
            ha="center",
            va="center",
            color="white" if count > matrix.max() / 2 else "black",
            fontsize=14,
        )
    axes.set(
        xticks=[0, 1],
        yticks=[0, 1],
        xticklabels=["REAL", "FAKE"],
        yticklabels=["REAL", "FAKE"],
        xlabel="predicted",
        ylabel="actual",
        title=f"test videos (threshold {threshold:.2f})",
    )
    _save(figure, target)


def reliability_figure(before: list[dict], after: list[dict], temperature: float, target) -> None:
    figure, axes = plt.subplots(figsize=(4.5, 4.5))
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="perfect")
    for table, label in ((before, "uncalibrated"), (after, f"temperature {temperature:.2f}")):
        if table:
            axes.plot([b["mean_p_fake"] for b in table], [b["fake_rate"] for b in table], marker="o", label=label)
    axes.set(
        xlabel="mean P(fake) in bin",
        ylabel="fraction of fakes",
        title="reliability (test faces)",
        xlim=(0, 1),
        ylim=(0, 1),
    )
    axes.legend(loc="upper left")
    _save(figure, target)


def history_figure(history: pd.DataFrame, target) -> None:
    figure, (loss, accuracy) = plt.subplots(1, 2, figsize=(9, 3.5))
    loss.plot(history["epoch"], history["train_loss"], marker="o", label="train")
    loss.plot(history["epoch"], history["val_loss"], marker="o", label="val")
    loss.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    accuracy.plot(history["epoch"], history["train_accuracy"], marker="o", label="train accuracy")
    accuracy.plot(history["epoch"], history["val_accuracy"], marker="o", label="val accuracy")
    accuracy.plot(history["epoch"], history["val_auc"], marker="s", label="val AUC (labelled fakes)")
    if "val_blend_auc" in history:
        accuracy.plot(history["epoch"], history["val_blend_auc"], marker="^", label="val AUC (pseudo-fakes)")
    accuracy.set(xlabel="epoch", title="accuracy and AUC", ylim=(0, 1.02))
    for axes in (loss, accuracy):
        axes.legend()
    _save(figure, target)
