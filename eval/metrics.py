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
