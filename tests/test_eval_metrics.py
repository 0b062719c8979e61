"""Every evaluation figure against an example small enough to compute by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from eval.stats import (
    bootstrap_ci,
    bootstrap_distribution,
    mcnemar,
    mcnemar_from_counts,
    paired_bootstrap,
)
from model.schema import CATEGORIES, STANCES
from model.scorer import (
    calibration_bins,
    category_counts,
    expected_calibration_error,
    macro_f1_from_counts,
    macro_f1_over_supported,
    micro_f1_from_counts,
    multilabel_report,
    stance_counts,
    stance_report,
)

K, M, P = (CATEGORIES.index(c) for c in ("kampanye", "media_sosial", "politik_uang"))
PRO, KONTRA, NETRAL = (STANCES.index(s) for s in ("pro", "kontra", "netral"))


def _matrix(rows: list[list[int]]) -> np.ndarray:
    out = np.zeros((len(rows), len(CATEGORIES)), dtype=int)
    for i, cols in enumerate(rows):
        out[i, cols] = 1
    return out


# Four sentences; only kampanye (K), media_sosial (M) and politik_uang (P) occur.
#   sentence  gold      predicted
#   1         K, M      K           -> M missed
#   2         K         K, P        -> P spurious
#   3         P         K           -> K spurious, P missed
#   4         -         -           -> exactly right
Y_TRUE = _matrix([[K, M], [K], [P], []])
Y_PRED = _matrix([[K], [K, P], [K], []])


def test_per_label_precision_recall_f1_support() -> None:
    report = multilabel_report(Y_TRUE, Y_PRED)["per_label"]
    # kampanye: tp 2 (s1, s2), fp 1 (s3), fn 0 -> P 2/3, R 1, F1 = 2·(2/3)·1 / (5/3) = 0.8
    assert report["kampanye"]["precision"] == pytest.approx(2 / 3)
    assert report["kampanye"]["recall"] == pytest.approx(1.0)
    assert report["kampanye"]["f1"] == pytest.approx(0.8)
    assert report["kampanye"]["support"] == 2
    # media_sosial: tp 0, fp 0, fn 1 -> precision undefined -> 0, recall 0, F1 0
    assert report["media_sosial"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    # politik_uang: tp 0, fp 1 (s2), fn 1 (s3) -> all 0, support 1
    assert report["politik_uang"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    # labels with no gold and no predicted sentence: 0 by convention, support 0
    assert report["intimidasi"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}


def test_micro_macro_subset_accuracy_and_hamming_loss() -> None:
    report = multilabel_report(Y_TRUE, Y_PRED)
    # pooled: TP 2, FP 2 (s2 P, s3 K), FN 2 (s1 M, s3 P) -> P = R = F1 = 0.5
    assert report["micro_precision"] == pytest.approx(0.5)
    assert report["micro_recall"] == pytest.approx(0.5)
    assert report["micro_f1"] == pytest.approx(0.5)
    # macro over all 8 labels: (0.8 + 0 * 7) / 8 = 0.1; over the 3 present: 0.8 / 3
    assert report["macro_f1"] == pytest.approx(0.1)
    assert macro_f1_over_supported(report) == pytest.approx(0.8 / 3)
    # only sentence 4 is exactly right: 1 / 4
    assert report["subset_accuracy"] == pytest.approx(0.25)
    # wrong slots: s1 1, s2 1, s3 2, s4 0 = 4 of 4 x 8 = 32
    assert report["hamming_loss"] == pytest.approx(4 / 32)


def test_count_form_of_f1_matches_the_reports() -> None:
    counts = category_counts(Y_TRUE, Y_PRED).sum(axis=0)
    report = multilabel_report(Y_TRUE, Y_PRED)
    assert micro_f1_from_counts(counts) == pytest.approx(report["micro_f1"])
    assert macro_f1_from_counts(counts) == pytest.approx(report["macro_f1"])
    # the counts add up over sentences: (tp, fp, fn) of kampanye = (2, 1, 0)
    assert counts[:, K].tolist() == [2, 1, 0]


# Five sentences: gold pro, pro, kontra, netral, netral; predicted pro, netral, kontra,
# netral, pro.
ST_TRUE = np.array([PRO, PRO, KONTRA, NETRAL, NETRAL])
ST_PRED = np.array([PRO, NETRAL, KONTRA, NETRAL, PRO])


def test_stance_accuracy_macro_f1_and_confusion() -> None:
    report = stance_report(ST_TRUE, ST_PRED)
    # rows true, columns predicted (pro, kontra, netral)
    assert report["confusion"] == [[1, 0, 1], [0, 1, 0], [1, 0, 1]]
    assert report["labels"] == list(STANCES)
    assert report["accuracy"] == pytest.approx(3 / 5)
    # pro: tp 1, fp 1, fn 1 -> 0.5; kontra: tp 1 -> 1.0; netral: tp 1, fp 1, fn 1 -> 0.5
    assert report["per_label"]["pro"]["f1"] == pytest.approx(0.5)
    assert report["per_label"]["kontra"]["f1"] == pytest.approx(1.0)
    assert report["per_label"]["netral"]["f1"] == pytest.approx(0.5)
    assert report["per_label"]["netral"]["support"] == 2
    assert report["macro_f1"] == pytest.approx(2 / 3)
    counts = stance_counts(ST_TRUE, ST_PRED).sum(axis=0)
    assert macro_f1_from_counts(counts) == pytest.approx(2 / 3)


def test_expected_calibration_error_by_hand() -> None:
    # 10 bins. confidence -> bin: 0.15 -> [0.1, 0.2), 0.25 -> [0.2, 0.3),
    # 0.55 -> [0.5, 0.6), 0.95 and 0.95 -> [0.9, 1.0].
    #   bin [0.1, 0.2): conf 0.15, right 0/1 -> gap 0.15, weight 1/5
    #   bin [0.2, 0.3): conf 0.25, right 1/1 -> gap 0.75, weight 1/5
    #   bin [0.5, 0.6): conf 0.55, right 1/1 -> gap 0.45, weight 1/5
    #   bin [0.9, 1.0]: conf 0.95, right 1/2 -> gap 0.45, weight 2/5
    # ECE = (0.15 + 0.75 + 0.45) / 5 + 0.45 * 2 / 5 = 0.27 + 0.18 = 0.45
    conf = np.array([0.15, 0.25, 0.55, 0.95, 0.95])
    right = np.array([0, 1, 1, 1, 0])
    ece, bins = calibration_bins(conf, right, n_bins=10)
    assert ece == pytest.approx(0.45)
    assert expected_calibration_error(conf, right) == pytest.approx(0.45)
    assert [b["count"] for b in bins] == [0, 1, 1, 0, 0, 1, 0, 0, 0, 2]
    assert bins[9]["confidence"] == pytest.approx(0.95) and bins[9]["accuracy"] == 0.5
    assert bins[0]["confidence"] is None
    # edges: 0.3 opens bin [0.3, 0.4); 1.0 belongs to the last bin; perfect -> ECE 0
    _, edge_bins = calibration_bins(np.array([0.3, 1.0]), np.array([0, 1]))
    assert edge_bins[3]["count"] == 1 and edge_bins[9]["count"] == 1
    assert expected_calibration_error(np.array([1.0, 0.0]), np.array([1, 0])) == 0.0


def test_mcnemar_on_a_small_table() -> None:
    # a right / b wrong on 6 sentences, the reverse on 1 (b = 6, c = 1, n = 7).
    # exact: 2 * P(X <= 1 | Bin(7, 1/2)) = 2 * (1 + 7) / 128 = 0.125
    # corrected chi²: (|6 - 1| - 1)² / 7 = 16/7; its 1-dof tail is 0.13057
    result = mcnemar_from_counts(6, 1)
    assert result["exact_p"] == pytest.approx(0.125)
    assert result["p_value"] == result["exact_p"]
    assert result["chi2_cc"] == pytest.approx(16 / 7)
    assert result["chi2_cc_p"] == pytest.approx(0.13057, abs=1e-5)
    # b = 3, c = 0: exact p = 2 / 8
    assert mcnemar_from_counts(3, 0)["exact_p"] == pytest.approx(0.25)
    # no discordant pair, or a tie: no evidence of a difference
    assert mcnemar_from_counts(0, 0)["p_value"] == 1.0
    assert mcnemar_from_counts(4, 4)["exact_p"] == 1.0
    assert mcnemar_from_counts(4, 4)["chi2_cc"] == 0.0
    # from per-sentence outcomes: both right 2, a only 6, b only 1, both wrong 1
    a = np.array([1, 1] + [1] * 6 + [0] + [0], dtype=bool)
    b = np.array([1, 1] + [0] * 6 + [1] + [0], dtype=bool)
    table = mcnemar(a, b)
    assert (table["both_correct"], table["a_only_correct"]) == (2, 6)
    assert (table["b_only_correct"], table["both_wrong"]) == (1, 1)
    assert table["exact_p"] == pytest.approx(0.125)


def _hits(flags: np.ndarray) -> np.ndarray:
    return np.stack([flags.astype(float), np.ones(len(flags))], axis=1)


def _accuracy(sums: np.ndarray) -> np.ndarray:
    return sums[:, 0] / sums[:, 1]


def test_bootstrap_of_summed_counts_equals_resampling_the_items() -> None:
    """Accuracy from resampled (hit, 1) counts = SciPy's bootstrap of the mean of the flags."""
    from scipy.stats import bootstrap

    flags = np.array([1] * 23 + [0] * 9, dtype=float)
    ours = bootstrap_ci(_hits(flags), _accuracy, n_resamples=400, seed=5)
    plain = bootstrap(
        (flags,), np.mean, n_resamples=400, method="percentile", rng=np.random.default_rng(5)
    )
    assert ours["low"] == pytest.approx(plain.confidence_interval.low, abs=1e-12)
    assert ours["high"] == pytest.approx(plain.confidence_interval.high, abs=1e-12)


def test_bootstrap_ci_contains_the_estimate_and_is_seeded() -> None:
    flags = np.array([1] * 30 + [0] * 10)  # accuracy 0.75
    ci = bootstrap_ci(_hits(flags), _accuracy, n_resamples=1000, seed=13)
    assert ci["estimate"] == pytest.approx(0.75)
    assert ci["low"] < 0.75 < ci["high"]
    # the normal approximation gives ±1.96·sqrt(.75·.25/40) = ±0.134; the bootstrap is close
    assert ci["high"] - ci["low"] == pytest.approx(0.268, abs=0.05)
    assert bootstrap_ci(_hits(flags), _accuracy, 1000, seed=13) == ci
    assert bootstrap_ci(_hits(flags), _accuracy, 1000, seed=14) != ci
    # micro-F1 on the hand example: estimate 0.5 inside its interval
    micro = bootstrap_ci(category_counts(Y_TRUE, Y_PRED), micro_f1_from_counts, 500, seed=13)
    assert micro["estimate"] == pytest.approx(0.5)
    assert micro["low"] <= 0.5 <= micro["high"]


def test_paired_bootstrap() -> None:
    good = np.array([1] * 55 + [0] * 5)
    poor = np.array([1] * 30 + [0] * 30)
    same = paired_bootstrap(_hits(good), _hits(good), _accuracy, 500, seed=13)
    assert same["diff"] == 0.0 and same["p_value"] == 1.0
    assert same["low"] == same["high"] == 0.0  # the same resamples for both models
    far = paired_bootstrap(_hits(good), _hits(poor), _accuracy, 500, seed=13)
    assert far["diff"] == pytest.approx(55 / 60 - 0.5)
    assert far["low"] > 0 and far["p_value"] < 0.01
    assert paired_bootstrap(_hits(good), _hits(poor), _accuracy, 500, seed=13) == far
    # one sentence of sixty: no evidence either way
    close = np.array([1] * 54 + [0] * 6)
    near = paired_bootstrap(_hits(good), _hits(close), _accuracy, 500, seed=13)
    assert near["p_value"] > 0.2
    with pytest.raises(ValueError, match="same items"):
        paired_bootstrap(_hits(good), _hits(good[:10]), _accuracy, 100, seed=1)


def test_bootstrap_distribution_shape_and_empty_sample() -> None:
    dist = bootstrap_distribution(_hits(np.array([1, 0, 1])), _accuracy, 37, seed=2)
    assert dist.shape == (37,) and ((dist >= 0) & (dist <= 1)).all()
    with pytest.raises(ValueError, match="empty"):
        bootstrap_distribution(np.zeros((0, 2)), _accuracy, 10, seed=2)
    assert math.isclose(float(dist.mean()), 2 / 3, abs_tol=0.1)


def test_our_metrics_agree_with_scikit_learn_on_random_labels() -> None:
    """The scorer is ours (it also serves bootstrap counts), so pin it to the reference."""
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

    rng = np.random.default_rng(7)
    y_true = rng.random((300, len(CATEGORIES))) < 0.2
    y_pred = rng.random((300, len(CATEGORIES))) < 0.25
    y_true[:, 3] = False  # a label with no gold positive: zero_division=0 on both sides
    ours = multilabel_report(y_true, y_pred)
    p, r, f, support = precision_recall_fscore_support(y_true, y_pred, zero_division=0)
    for j, c in enumerate(CATEGORIES):
        block = ours["per_label"][c]
        assert (block["precision"], block["recall"], block["f1"]) == pytest.approx(
            (p[j], r[j], f[j])
        )
        assert block["support"] == support[j]
    assert ours["micro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="micro"))
    assert ours["macro_f1"] == pytest.approx(
        f1_score(y_true, y_pred, average="macro", zero_division=0)
    )
    s_true = rng.integers(0, len(STANCES), 300)
    s_pred = rng.integers(0, len(STANCES), 300)
    stance = stance_report(s_true, s_pred)
    assert stance["accuracy"] == pytest.approx(accuracy_score(s_true, s_pred))
    assert stance["macro_f1"] == pytest.approx(
        f1_score(s_true, s_pred, average="macro", labels=range(len(STANCES)), zero_division=0)
    )
