"""The scorer: label encoding, classification metrics and threshold tuning.

It sits low (in `model/`) so that training (dev metrics, thresholds) and the evaluation
harness (test metrics) share one implementation without importing each other, and a number
means the same thing everywhere.

Conventions: precision/recall/F1 of a label with no predicted (or no true) positives is 0,
as in scikit-learn's `zero_division=0`; macro averages are unweighted means over all labels
of the schema, including labels with zero support (they are reported, never dropped).
"""

from __future__ import annotations

import numpy as np

from model.schema import CATEGORIES, STANCES

# Candidate thresholds; extreme values overfit a small dev set, so the grid is bounded.
THRESHOLD_GRID = np.round(np.arange(0.10, 0.901, 0.05), 2)


def label_arrays(records: list[dict]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Texts, a (n, categories) 0/1 matrix and a (n,) stance index vector."""
    texts = [r["text"] for r in records]
    y_cat = np.array(
        [[c in r["categories"] for c in CATEGORIES] for r in records], dtype=np.int64
    ).reshape(len(records), len(CATEGORIES))
    y_stance = np.array([STANCES.index(r["stance"]) for r in records], dtype=np.int64)
    return texts, y_cat, y_stance


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


THRESHOLD_MODES = ("global", "per_category")


def tune_thresholds(
    scores: np.ndarray,
    y_true: np.ndarray,
    grid: np.ndarray = THRESHOLD_GRID,
    mode: str = "global",
) -> tuple[dict[str, float], dict[str, str]]:
    """Category thresholds tuned on dev; ties go to the value nearest 0.5.

    `global` (the default): one threshold for every category, maximising dev micro-F1.
    `per_category`: each category's own threshold maximising its dev F1. Eight thresholds
    fitted on a few dozen dev positives each follow dev's stories: tuned on half of dev's
    stories and scored on the other half (200 random halves, `python -m eval.thresholds`),
    one threshold was better on average for each of eight models, by 0.007-0.029 micro-F1
    (README, "Thresholds"). Calibration is per category, so one threshold on calibrated scores
    still treats each category on its own scale.

    The second return value says how each threshold was set (`tuned`, `tuned: one for all
    categories` or `default: no dev positives`), so the model card can tell an evaluator
    which thresholds rest on evidence.
    """
    if mode not in THRESHOLD_MODES:
        raise ValueError(f"thresholds must be one of {THRESHOLD_MODES}, got {mode!r}")
    truth = y_true.astype(bool)
    if mode == "global":
        if not truth.any():
            value, how = 0.5, "default: no dev positives"
        else:
            value = max(
                (float(t) for t in grid),
                key=lambda t: (round(f1_of(scores >= t, truth), 9), -abs(t - 0.5)),
            )
            how = "tuned: one for all categories"
        return {c: value for c in CATEGORIES}, {c: how for c in CATEGORIES}
    thresholds, hows = {}, {}
    for j, name in enumerate(CATEGORIES):
        if not truth[:, j].any():
            thresholds[name], hows[name] = 0.5, "default: no dev positives"
            continue
        thresholds[name] = max(
            (float(t) for t in grid),
            key=lambda t, j=j: (round(f1_of(scores[:, j] >= t, truth[:, j]), 9), -abs(t - 0.5)),
        )
        hows[name] = "tuned"
    return thresholds, hows


def f1_of(pred: np.ndarray, truth: np.ndarray) -> float:
    """F1 of boolean predictions (micro over every cell when the arrays are 2-D)."""
    denom = float(pred.sum() + truth.sum())
    return 2 * float((pred & truth).sum()) / denom if denom else 0.0


def dev_metrics(
    cat_scores: np.ndarray,
    stance_probs: np.ndarray,
    y_cat: np.ndarray,
    y_stance: np.ndarray,
    thresholds: dict[str, float],
) -> dict:
    """The compact dev summary stored in meta.json and the model card."""
    t = np.array([thresholds[c] for c in CATEGORIES])
    cats = multilabel_report(y_cat, cat_scores >= t)
    stance = stance_report(y_stance, stance_probs.argmax(axis=1))
    return {
        "sentences": len(y_stance),
        "category_micro_f1": cats["micro_f1"],
        "category_macro_f1": cats["macro_f1"],
        "per_category_f1": {c: cats["per_label"][c]["f1"] for c in CATEGORIES},
        "per_category_support": {c: cats["per_label"][c]["support"] for c in CATEGORIES},
        "stance_accuracy": stance["accuracy"],
        "stance_macro_f1": stance["macro_f1"],
    }


def calibration_bins(
    confidence: np.ndarray, outcome: np.ndarray, n_bins: int = 10
) -> tuple[float, list[dict]]:
    """Expected calibration error and the reliability-diagram bins behind it.

    Predictions fall into `n_bins` equal-width bins of [0, 1] by confidence (a value on a
    bin edge goes to the upper bin; 1.0 to the last). ECE = Σ_b (n_b / N) · |mean
    outcome_b - mean confidence_b|: the average gap between how sure the model is and how
    often it is right, weighted by how many predictions sit in each bin. 0 is perfect.
    """
    conf = np.asarray(confidence, dtype=np.float64).ravel()
    hit = np.asarray(outcome, dtype=np.float64).ravel()
    if conf.shape != hit.shape:
        raise ValueError("confidence and outcome must have the same size")
    edges = np.arange(n_bins + 1) / n_bins
    which = np.clip(np.searchsorted(edges, conf, side="right") - 1, 0, n_bins - 1)
    total = conf.size
    ece = 0.0
    bins = []
    for i in range(n_bins):
        mask = which == i
        count = int(mask.sum())
        mean_conf = float(conf[mask].mean()) if count else None
        mean_hit = float(hit[mask].mean()) if count else None
        if count:
            ece += count / total * abs(mean_hit - mean_conf)
        bins.append(
            {
                "low": float(edges[i]),
                "high": float(edges[i + 1]),
                "count": count,
                "confidence": mean_conf,
                "accuracy": mean_hit,
            }
        )
    return float(ece), bins


def expected_calibration_error(
    confidence: np.ndarray, outcome: np.ndarray, n_bins: int = 10
) -> float:
    """ECE alone; see `calibration_bins`."""
    return calibration_bins(confidence, outcome, n_bins)[0]
