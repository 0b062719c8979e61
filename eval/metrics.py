"""Classification metrics: the one implementation that training (dev metrics) and the
evaluation harness (test metrics) share, so a number means the same thing everywhere.

Conventions: precision/recall/F1 of a label with no predicted (or no true) positives is 0,
as in scikit-learn's `zero_division=0`; macro averages are unweighted means over all labels
of the schema, including labels with zero support (they are reported, never dropped).
"""

from __future__ import annotations

import numpy as np

from model.schema import CATEGORIES, STANCES


def _prf(tp: float, fp: float, fn: float) -> tuple[float, float, float]:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def multilabel_report(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """Per-category P/R/F1/support, micro and macro F1, subset accuracy and Hamming loss."""
    y_true = np.asarray(y_true, dtype=bool)
    y_pred = np.asarray(y_pred, dtype=bool)
    tp = (y_true & y_pred).sum(axis=0)
    fp = (~y_true & y_pred).sum(axis=0)
    fn = (y_true & ~y_pred).sum(axis=0)
    per_label = {}
    for j, name in enumerate(CATEGORIES):
        p, r, f = _prf(tp[j], fp[j], fn[j])
        per_label[name] = {"precision": p, "recall": r, "f1": f, "support": int(y_true[:, j].sum())}
    micro_p, micro_r, micro_f = _prf(tp.sum(), fp.sum(), fn.sum())
    n = len(y_true)
    return {
        "per_label": per_label,
        "micro_precision": micro_p,
        "micro_recall": micro_r,
        "micro_f1": micro_f,
        "macro_f1": float(np.mean([v["f1"] for v in per_label.values()])),
        "subset_accuracy": float((y_true == y_pred).all(axis=1).mean()) if n else 0.0,
        "hamming_loss": float((y_true != y_pred).mean()) if n else 0.0,
    }


def stance_report(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """Stance accuracy, macro F1, per-stance P/R/F1 and the confusion matrix (rows = true)."""
    y_true = np.asarray(y_true, dtype=int)
    y_pred = np.asarray(y_pred, dtype=int)
    k = len(STANCES)
    confusion = np.zeros((k, k), dtype=int)
    np.add.at(confusion, (y_true, y_pred), 1)
    per_label = {}
    for j, name in enumerate(STANCES):
        tp = confusion[j, j]
        p, r, f = _prf(tp, confusion[:, j].sum() - tp, confusion[j, :].sum() - tp)
        per_label[name] = {"precision": p, "recall": r, "f1": f, "support": int(confusion[j].sum())}
    n = len(y_true)
    return {
        "accuracy": float((y_true == y_pred).mean()) if n else 0.0,
        "macro_f1": float(np.mean([v["f1"] for v in per_label.values()])),
        "per_label": per_label,
        "confusion": confusion.tolist(),
        "labels": list(STANCES),
    }


# --- Per-sentence counts -------------------------------------------------------------------
# The bootstrap (eval/stats.py) resamples sentences, so it needs every metric written as a
# function of counts that add up over sentences. These helpers give those counts and the
# F1 figures computed from summed counts; for the full data they equal the reports above
# (2·tp / (2·tp + fp + fn) is the same F1 as 2PR / (P + R), with 0 where it is undefined).


def category_counts(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Per-sentence true/false positives and false negatives: shape (n, 3, categories)."""
    y_true = np.asarray(y_true, dtype=bool)
    y_pred = np.asarray(y_pred, dtype=bool)
    return np.stack([y_true & y_pred, ~y_true & y_pred, y_true & ~y_pred], axis=1).astype(
        np.float64
    )


def stance_counts(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Per-sentence tp/fp/fn for each stance (one-vs-rest): shape (n, 3, stances)."""
    k = len(STANCES)
    true_1h = np.eye(k, dtype=bool)[np.asarray(y_true, dtype=int)]
    pred_1h = np.eye(k, dtype=bool)[np.asarray(y_pred, dtype=int)]
    return category_counts(true_1h, pred_1h)


def f1_from_counts(counts: np.ndarray) -> np.ndarray:
    """Per-label F1 from summed counts (..., 3, labels) -> (..., labels); 0 where undefined."""
    tp, fp, fn = counts[..., 0, :], counts[..., 1, :], counts[..., 2, :]
    denom = 2 * tp + fp + fn
    return np.divide(2 * tp, denom, out=np.zeros_like(denom, dtype=np.float64), where=denom > 0)


def micro_f1_from_counts(counts: np.ndarray) -> np.ndarray:
    """Micro F1 from summed counts (..., 3, labels) -> (...)."""
    return f1_from_counts(counts.sum(axis=-1, keepdims=True))[..., 0]


def macro_f1_from_counts(counts: np.ndarray) -> np.ndarray:
    """Macro F1 (unweighted mean over all labels) from summed counts -> (...)."""
    return f1_from_counts(counts).mean(axis=-1)


def macro_f1_over_supported(report: dict) -> float | None:
    """Mean F1 over the labels that occur in the gold data (None when none does).

    Macro-F1 over all labels counts a label with no gold sentence as F1 = 0 for every
    model, which says nothing about the models; this figure leaves such labels out so an
    evaluator can see both readings.
    """
    f1s = [v["f1"] for v in report["per_label"].values() if v["support"] > 0]
    return float(np.mean(f1s)) if f1s else None
