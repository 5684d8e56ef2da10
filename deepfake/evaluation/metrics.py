"""Classification metrics for one level (face, frame or video), the decision threshold, and calibration."""

from __future__ import annotations

import math

import numpy as np

from deepfake.model.scores import p_fake

# scikit-learn and SciPy are imported where used: each adds startup time and memory to every process that
# imports this module.


def _both_classes(labels: np.ndarray) -> bool:
    return len(np.unique(labels)) == 2


def choose_threshold(labels: np.ndarray, scores: np.ndarray, default: float = 0.5) -> tuple[float, str]:
    """The score that best separates the classes (Youden's J = TPR - FPR), with where it came from.

    The threshold sits half way between the lowest score called FAKE and the next score below it, not on
    a validation score itself, so a test score a hair below the lowest validation fake is not missed.

    With one class only there is nothing to choose from: `default` is returned and the reason says why.
    """
    from sklearn import metrics as sk

    labels, scores = np.asarray(labels), np.asarray(scores, dtype=float)
    if not _both_classes(labels):
        return (
            default,
            f"default {default}: the validation split has {'no' if len(labels) == 0 else 'one class of'} scores",
        )
    fpr, tpr, thresholds = sk.roc_curve(labels, scores, drop_intermediate=False)
    best = int(np.argmax(tpr - fpr))
    threshold = thresholds[best] if best + 1 == len(thresholds) else (thresholds[best] + thresholds[best + 1]) / 2
    return float(min(1.0, threshold)), "validation split (max TPR - FPR)"


def classification_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict:
    """Accuracy, balanced accuracy, precision, recall, F1, ROC-AUC, log loss and the confusion matrix.

    Scores are P(fake); a score at or above `threshold` is called FAKE. Metrics that need both classes are
    None when one is missing, so the JSON stays valid and the gap is visible.
    """
    from sklearn import metrics as sk

    labels = np.asarray(labels, dtype=int)
    scores = np.asarray(scores, dtype=float)
    predicted = (scores >= threshold).astype(int)
    if len(labels) == 0:
        return {"count": 0}
    tn, fp, fn, tp = sk.confusion_matrix(labels, predicted, labels=[0, 1]).ravel()
    both = _both_classes(labels)
    return {
        "count": len(labels),
        "threshold": float(threshold),
        "accuracy": float(sk.accuracy_score(labels, predicted)),
        "balanced_accuracy": float(sk.balanced_accuracy_score(labels, predicted)) if both else None,
        "precision": float(sk.precision_score(labels, predicted, zero_division=0)),
        "recall": float(sk.recall_score(labels, predicted, zero_division=0)),
        "f1": float(sk.f1_score(labels, predicted, zero_division=0)),
        "auc": float(sk.roc_auc_score(labels, scores)) if both else None,
        "log_loss": float(sk.log_loss(labels, np.clip(scores, 1e-7, 1 - 1e-7), labels=[0, 1])),
        "confusion": {"tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)},
    }


def bootstrap_auc(
    labels: np.ndarray, scores: np.ndarray, *, rounds: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float] | tuple[None, None]:
    """Percentile interval for ROC-AUC, resampling each class separately so every round has both."""
    from sklearn import metrics as sk

    labels, scores = np.asarray(labels, dtype=int), np.asarray(scores, dtype=float)
    if not _both_classes(labels) or rounds < 1:
        return None, None
    aucs = [sk.roc_auc_score(labels[picks], scores[picks]) for picks in _class_resamples(labels, rounds, seed)]
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(aucs, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_auc_difference(
    labels: np.ndarray,
    scores: np.ndarray,
    baseline: np.ndarray,
    *,
    rounds: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float, float] | tuple[None, None, None]:
    """AUC of `scores` minus AUC of `baseline` on the same items, with a percentile interval.

    Each round resamples the items once for both: two models scored on one set share its luck (which videos
    are hard), so their difference is known far more tightly than either AUC's own interval suggests.
    """
    from sklearn import metrics as sk

    labels = np.asarray(labels, dtype=int)
    scores, baseline = np.asarray(scores, dtype=float), np.asarray(baseline, dtype=float)
    if not _both_classes(labels) or rounds < 1:
        return None, None, None
    differences = [
        sk.roc_auc_score(labels[picks], scores[picks]) - sk.roc_auc_score(labels[picks], baseline[picks])
        for picks in _class_resamples(labels, rounds, seed)
    ]
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(differences, [tail, 100 - tail])
    difference = sk.roc_auc_score(labels, scores) - sk.roc_auc_score(labels, baseline)
    return float(difference), float(low), float(high)


def _class_resamples(labels: np.ndarray, rounds: int, seed: int):
    """Index draws of a bootstrap that resamples each class separately, so every round has both."""
    rng = np.random.default_rng(seed)
    real, fake = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
    for _ in range(rounds):
        yield np.concatenate([rng.choice(real, len(real)), rng.choice(fake, len(fake))])


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """Temperature T minimising the log loss of sigmoid(logit / T) (Guo et al., 2017); 1 when it cannot be fit.

    `logits` are the FAKE-minus-REAL logit differences. One parameter cannot reorder scores, so AUC and any
    ranking are unchanged; only what p_fake means is.
    """
    from scipy.optimize import minimize_scalar

    logits, labels = np.asarray(logits, dtype=float), np.asarray(labels, dtype=int)
    if not _both_classes(labels):
        return 1.0

    def loss(log_t: float) -> float:
        p = np.clip(p_fake(logits, math.exp(log_t)), 1e-7, 1 - 1e-7)
        return float(-(labels * np.log(p) + (1 - labels) * np.log(1 - p)).mean())

    low, high = TEMPERATURE_BOUNDS
    best = minimize_scalar(loss, bounds=(math.log(low), math.log(high)), method="bounded")
    return float(math.exp(best.x))


TEMPERATURE_BOUNDS = (0.05, 50.0)


def at_bound(temperature: float) -> bool:
    """A fitted temperature at (within 2% of) a bound of its search: the fit found no minimum inside."""
    low, high = TEMPERATURE_BOUNDS
    return temperature <= low * 1.02 or temperature >= high * 0.98


def reliability(labels: np.ndarray, scores: np.ndarray, bins: int = 10) -> tuple[float | None, list[dict]]:
    """Expected calibration error and its table: per equal-width bin of P(fake), the mean score and fake rate."""
    labels, scores = np.asarray(labels, dtype=int), np.asarray(scores, dtype=float)
    if len(labels) == 0:
        return None, []
    which = np.minimum((scores * bins).astype(int), bins - 1)
    table, error = [], 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            confidence, rate = float(scores[inside].mean()), float(labels[inside].mean())
            error += inside.sum() / len(labels) * abs(confidence - rate)
            table.append(
                {
                    "bin": b,
                    "low": b / bins,
                    "high": (b + 1) / bins,
                    "count": int(inside.sum()),
                    "mean_p_fake": confidence,
                    "fake_rate": rate,
                }
            )
    return float(error), table
