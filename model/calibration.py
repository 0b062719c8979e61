"""Temperature scaling: probabilities that mean what they say.

A model's raw scores rank sentences well but are often over- or under-confident (a
class-weighted logistic regression pushes rare categories up; a fine-tuned network is
sure of everything). One temperature per category (on its logit) and one for the stance
distribution (on its log-probabilities), fitted on dev by minimising the log-loss, fixes
the scale without changing any ranking (Guo et al. 2017). Thresholds are tuned after
calibration, so decisions stay as good as before while the probabilities become honest.

The temperatures live in meta.json (`calibration`), so every backend gets the same
treatment and an artifact without them behaves as before.
"""

from __future__ import annotations

import numpy as np

from model.predictor import Scores

EPS = 1e-6
BOUNDS = (0.05, 20.0)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


def apply(scores: Scores, calibration: dict | None) -> Scores:
    """Scores with the stored temperatures applied (unchanged when there are none)."""
    if not calibration:
        return scores
    t_cat = np.asarray(calibration["category_temperature"], dtype=np.float64)
    cat = 1.0 / (1.0 + np.exp(-_logit(scores.categories) / t_cat))
    z = np.log(np.clip(scores.stance, EPS, 1.0)) / float(calibration["stance_temperature"])
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return Scores(categories=cat, stance=z / z.sum(axis=1, keepdims=True))


def fit(scores: Scores, y_cat: np.ndarray, y_stance: np.ndarray) -> dict:
    """Temperatures minimising dev log-loss, per category and for the stance."""
    from scipy.optimize import minimize_scalar

    def best(loss) -> float:
        return float(minimize_scalar(loss, bounds=BOUNDS, method="bounded").x)

    temps = []
    for j in range(y_cat.shape[1]):
        z, y = _logit(scores.categories[:, j]), y_cat[:, j].astype(np.float64)
        if y.min() == y.max():  # one class only on dev: nothing to calibrate against
            temps.append(1.0)
            continue

        def cat_loss(t: float, z: np.ndarray = z, y: np.ndarray = y) -> float:
            q = np.clip(1.0 / (1.0 + np.exp(-z / t)), EPS, 1 - EPS)
            return float(-(y * np.log(q) + (1 - y) * np.log(1 - q)).mean())

        temps.append(best(cat_loss))
    logp = np.log(np.clip(scores.stance, EPS, 1.0))
    rows = np.arange(len(y_stance))

    def stance_loss(t: float) -> float:
        z = logp / t
        z = z - z.max(axis=1, keepdims=True)
        log_q = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return float(-log_q[rows, y_stance].mean())

    return {
        "method": "temperature scaling, fitted on dev (log-loss)",
        "category_temperature": [round(t, 6) for t in temps],
        "stance_temperature": round(best(stance_loss), 6),
    }
