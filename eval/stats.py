"""Uncertainty and calibration: bootstrap intervals, paired tests, McNemar, ECE.

NumPy and the standard library only, and every random draw comes from
`numpy.random.default_rng(seed)`, so the same inputs and seed give the same numbers on any
machine; `metrics.json` is compared byte for byte between runs.

Why a bootstrap over sentences: our test sets are a few dozen to a few thousand sentences,
too few for normal approximations of F1 (a ratio of counts with a bounded, skewed
distribution). Every statistic here is a function of counts that add up over sentences
(see `model.scorer.category_counts`), so one resample is a weight vector (how often each
sentence was drawn) and a statistic of a resample is `weights @ per_sentence_counts`.
Two models evaluated with the same seed see exactly the same resamples, which is what makes
the paired comparison paired.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

# Resampled weight rows held in memory at once are capped at this many numbers (~32 MB).
_CHUNK_CELLS = 4_000_000

Statistic = Callable[[np.ndarray], np.ndarray]


def resample_weights(n: int, n_resamples: int, seed: int) -> Iterator[np.ndarray]:
    """Bootstrap resamples of n items as count weights, in chunks of shape (m, n).

    Row r says how many times each item was drawn in resample r (rows sum to n). Chunking
    depends only on n, so the stream is the same for the same (n, n_resamples, seed).
    """
    if n <= 0:
        raise ValueError("cannot bootstrap an empty sample")
    if n_resamples <= 0:
        raise ValueError("n_resamples must be positive")
    rng = np.random.default_rng(seed)
    chunk = max(1, min(n_resamples, _CHUNK_CELLS // n))
    done = 0
    while done < n_resamples:
        m = min(chunk, n_resamples - done)
        draws = rng.integers(0, n, size=(m, n))
        flat = (draws + n * np.arange(m)[:, None]).ravel()
        yield np.bincount(flat, minlength=m * n).reshape(m, n).astype(np.float64)
        done += m


def bootstrap_distribution(
    per_item: np.ndarray, statistic: Statistic, n_resamples: int = 1000, seed: int = 13
) -> np.ndarray:
    """The statistic on each bootstrap resample: shape (n_resamples,).

    `per_item` has shape (n, ...) and holds additive per-item contributions (counts);
    `statistic` maps summed contributions of shape (m, ...) to m values.
    """
    per_item = np.asarray(per_item, dtype=np.float64)
    n = per_item.shape[0]
    if n == 0:
        raise ValueError("cannot bootstrap an empty sample")
    flat = per_item.reshape(n, -1)
    out = []
    for weights in resample_weights(n, n_resamples, seed):
        sums = (weights @ flat).reshape((weights.shape[0], *per_item.shape[1:]))
        out.append(np.asarray(statistic(sums), dtype=np.float64))
    return np.concatenate(out)


def point_estimate(per_item: np.ndarray, statistic: Statistic) -> float:
    """The statistic on the full sample (every item once)."""
    per_item = np.asarray(per_item, dtype=np.float64)
    return float(statistic(per_item.sum(axis=0)[None, ...])[0])


def percentile_interval(dist: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval (linear interpolation between order statistics)."""
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(dist, [tail, 100.0 - tail])
    return float(low), float(high)


def bootstrap_ci(
    per_item: np.ndarray,
    statistic: Statistic,
    n_resamples: int = 1000,
    seed: int = 13,
    confidence: float = 0.95,
) -> dict:
    """Point estimate and percentile bootstrap interval of one statistic."""
    dist = bootstrap_distribution(per_item, statistic, n_resamples, seed)
    low, high = percentile_interval(dist, confidence)
    return {"estimate": point_estimate(per_item, statistic), "low": low, "high": high}


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
    dist_a = bootstrap_distribution(per_item_a, statistic, n_resamples, seed)
    dist_b = bootstrap_distribution(per_item_b, statistic, n_resamples, seed)
    est_a, est_b = point_estimate(per_item_a, statistic), point_estimate(per_item_b, statistic)
    diff = est_a - est_b
    deltas = dist_a - dist_b
    low, high = percentile_interval(deltas, confidence)
    # A tiny tolerance keeps float noise from deciding ties such as d* == 2d.
    extreme = int(np.sum(np.abs(deltas - diff) >= abs(diff) - 1e-12))
    return {
        "a": est_a,
        "b": est_b,
        "diff": diff,
        "low": low,
        "high": high,
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
