"""Uncertainty and calibration: bootstrap intervals, paired tests, McNemar, ECE.

Resampling is `scipy.stats.bootstrap` (percentile intervals) with a generator seeded from
`seed`, so the same inputs and seed give the same numbers on any machine; `metrics.json`
is compared byte for byte between runs.

Why a bootstrap over sentences: our test sets are a few dozen to a few thousand sentences,
too few for normal approximations of F1 (a ratio of counts with a bounded, skewed
distribution). Every statistic here is a function of counts that add up over sentences
(see `model.scorer.category_counts`), so SciPy resamples sentence *indices* and the
statistic of a resample is the statistic of the summed counts of the drawn sentences.
Two models evaluated with the same seed see exactly the same resamples, which is what makes
the paired comparison paired.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

# Resampled counts held in memory at once are capped at this many numbers (~32 MB).
_CHUNK_CELLS = 4_000_000

Statistic = Callable[[np.ndarray], np.ndarray]


def _index_bootstrap(
    n: int,
    statistic_of_indices: Callable[[np.ndarray], np.ndarray],
    n_resamples: int,
    seed: int,
    cells_per_item: int,
    confidence: float = 0.95,
):
    """`scipy.stats.bootstrap` over the item indices 0..n-1 (percentile method)."""
    from scipy.stats import bootstrap

    if n <= 0:
        raise ValueError("cannot bootstrap an empty sample")
    if n_resamples <= 0:
        raise ValueError("n_resamples must be positive")

    def on_indices(idx: np.ndarray, axis: int = -1) -> np.ndarray:
        idx = np.asarray(idx, dtype=np.intp)
        values = statistic_of_indices(np.atleast_2d(idx))
        return values if idx.ndim > 1 else values[0]

    return bootstrap(
        (np.arange(n),),
        on_indices,
        n_resamples=n_resamples,
        batch=max(1, _CHUNK_CELLS // (n * cells_per_item)),
        vectorized=True,
        confidence_level=confidence,
        method="percentile",
        rng=np.random.default_rng(seed),
    )


def _summed(per_item: np.ndarray, statistic: Statistic) -> Callable[[np.ndarray], np.ndarray]:
    """Statistic of resampled index rows (m, n): the summed counts of the drawn items."""
    flat = per_item.reshape(per_item.shape[0], -1)

    def of_indices(idx: np.ndarray) -> np.ndarray:
        sums = flat[idx].sum(axis=1).reshape((idx.shape[0], *per_item.shape[1:]))
        return np.asarray(statistic(sums), dtype=np.float64)

    return of_indices


def _checked(per_item: np.ndarray) -> np.ndarray:
    per_item = np.asarray(per_item, dtype=np.float64)
    if per_item.shape[0] == 0:
        raise ValueError("cannot bootstrap an empty sample")
    return per_item


def bootstrap_distribution(
    per_item: np.ndarray, statistic: Statistic, n_resamples: int = 1000, seed: int = 13
) -> np.ndarray:
    """The statistic on each bootstrap resample: shape (n_resamples,).

    `per_item` has shape (n, ...) and holds additive per-item contributions (counts);
    `statistic` maps summed contributions of shape (m, ...) to m values.
    """
    per_item = _checked(per_item)
    n, cells = per_item.shape[0], max(1, per_item[0].size)
    res = _index_bootstrap(n, _summed(per_item, statistic), n_resamples, seed, cells)
    return np.asarray(res.bootstrap_distribution, dtype=np.float64)


def point_estimate(per_item: np.ndarray, statistic: Statistic) -> float:
    """The statistic on the full sample (every item once)."""
    per_item = np.asarray(per_item, dtype=np.float64)
    return float(statistic(per_item.sum(axis=0)[None, ...])[0])


def bootstrap_ci(
    per_item: np.ndarray,
    statistic: Statistic,
    n_resamples: int = 1000,
    seed: int = 13,
    confidence: float = 0.95,
) -> dict:
    """Point estimate and percentile bootstrap interval of one statistic."""
    per_item = _checked(per_item)
    n, cells = per_item.shape[0], max(1, per_item[0].size)
    res = _index_bootstrap(n, _summed(per_item, statistic), n_resamples, seed, cells, confidence)
    low, high = res.confidence_interval
    return {"estimate": point_estimate(per_item, statistic), "low": float(low), "high": float(high)}


def paired_bootstrap(
    per_item_a: np.ndarray,
    per_item_b: np.ndarray,
    statistic: Statistic,
    n_resamples: int = 1000,
    seed: int = 13,
    confidence: float = 0.95,
) -> dict:
    """Difference a - b of a statistic, its interval and a two-sided p-value.

    Both models are scored on the same resampled sentences. The p-value tests "no
    difference" by centring the bootstrap distribution of the difference on zero
    (Efron & Tibshirani 1993, §16.4): p = (1 + #{|d* - d| >= |d|}) / (B + 1). It is 1 when
    the observed difference is 0 and never 0, as a finite resample count cannot show.
    """
    if np.shape(per_item_a) != np.shape(per_item_b):
        raise ValueError("paired bootstrap needs the same items for both models")
    a, b = _checked(per_item_a), _checked(per_item_b)
    stat_a, stat_b = _summed(a, statistic), _summed(b, statistic)
    n, cells = a.shape[0], 2 * max(1, a[0].size)
    res = _index_bootstrap(
        n, lambda idx: stat_a(idx) - stat_b(idx), n_resamples, seed, cells, confidence
    )
    est_a, est_b = point_estimate(a, statistic), point_estimate(b, statistic)
    diff = est_a - est_b
    deltas = np.asarray(res.bootstrap_distribution, dtype=np.float64)
    low, high = res.confidence_interval
    # A tiny tolerance keeps float noise from deciding ties such as d* == 2d.
    extreme = int(np.sum(np.abs(deltas - diff) >= abs(diff) - 1e-12))
    return {
        "a": est_a,
        "b": est_b,
        "diff": diff,
        "low": float(low),
        "high": float(high),
        "p_value": (1 + extreme) / (n_resamples + 1),
    }


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> dict:
    """McNemar's test on paired right/wrong outcomes of two models on the same items."""
    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError("McNemar needs the same items for both models")
    table = {
        "both_correct": int(np.sum(a & b)),
        "a_only_correct": int(np.sum(a & ~b)),
        "b_only_correct": int(np.sum(~a & b)),
        "both_wrong": int(np.sum(~a & ~b)),
    }
    return {**table, **mcnemar_from_counts(table["a_only_correct"], table["b_only_correct"])}


def mcnemar_from_counts(b: int, c: int) -> dict:
    """Exact and continuity-corrected McNemar p-values from the discordant counts b and c.

    Exact: two-sided binomial test of b successes in b + c trials with p = 1/2 (valid for
    any count; the one we report as `p_value`). Continuity-corrected chi-square with one
    degree of freedom, (max(|b - c| - 1, 0))² / (b + c), is given too because it is the
    textbook figure; it is only trustworthy when b + c is large (say 25 or more).
    """
    from scipy.stats import binomtest
    from scipy.stats import chi2 as chi2_dist

    n = b + c
    if n == 0:
        return {"exact_p": 1.0, "chi2_cc": 0.0, "chi2_cc_p": 1.0, "p_value": 1.0}
    exact = float(binomtest(min(b, c), n, 0.5, alternative="two-sided").pvalue)
    chi2 = max(abs(b - c) - 1, 0) ** 2 / n
    chi2_p = float(chi2_dist.sf(chi2, df=1))
    return {"exact_p": exact, "chi2_cc": chi2, "chi2_cc_p": chi2_p, "p_value": exact}
