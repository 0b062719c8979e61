"""Temperature scaling: fitted on dev, it makes probabilities honest and keeps rankings."""

from __future__ import annotations

import numpy as np

from model import calibration
from model.predictor import Scores
from model.schema import CATEGORIES, STANCES
from model.scorer import calibration_bins


def _overconfident(n: int = 4000, seed: int = 0) -> tuple[Scores, np.ndarray, np.ndarray]:
    """True probabilities p, reported as sigmoid(3 * logit(p)): far too sure."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.02, 0.98, size=(n, len(CATEGORIES)))
    y_cat = (rng.uniform(size=p.shape) < p).astype(int)
    logit = np.log(p) - np.log1p(-p)
    reported = 1 / (1 + np.exp(-3 * logit))
    true_stance = rng.dirichlet(np.ones(len(STANCES)), size=n)
    y_stance = np.array([rng.choice(len(STANCES), p=row) for row in true_stance])
    sharp = true_stance**3
    sharp /= sharp.sum(axis=1, keepdims=True)
    return Scores(categories=reported, stance=sharp), y_cat, y_stance


def test_temperatures_recover_the_sharpening_and_cut_the_calibration_error() -> None:
    scores, y_cat, y_stance = _overconfident()
    fitted = calibration.fit(scores, y_cat, y_stance)
    assert np.allclose(fitted["category_temperature"], 3.0, atol=0.35)
    assert 2.0 < fitted["stance_temperature"] < 4.0
    after = calibration.apply(scores, fitted)
    ece_before = calibration_bins(scores.categories, y_cat)[0]
    ece_after = calibration_bins(after.categories, y_cat)[0]
    assert ece_after < 0.03 < ece_before
    # Monotone per category and per row: the same ranking, so the same decisions are possible.
    for j in range(len(CATEGORIES)):
        assert (
            np.argsort(after.categories[:, j], kind="stable")
            == np.argsort(scores.categories[:, j], kind="stable")
        ).all()
    assert (after.stance.argmax(axis=1) == scores.stance.argmax(axis=1)).all()
    np.testing.assert_allclose(after.stance.sum(axis=1), 1.0)


def test_no_calibration_is_the_identity_and_one_class_keeps_temperature_one() -> None:
    scores, y_cat, y_stance = _overconfident(n=200)
    assert calibration.apply(scores, None) is scores
    y_cat[:, 0] = 0
    assert calibration.fit(scores, y_cat, y_stance)["category_temperature"][0] == 1.0
