"""How much a model's answer for a sentence is worth a person's label (uncertainty sampling).

Two signals, both in [0, 1], from the calibrated scores a `model.predictor.Predictor` gives:

- **stance entropy**: the Shannon entropy of the three stance probabilities divided by
  log 3, so 1 is a uniform guess and 0 a certain one;
- **threshold closeness**: for each category, how near its score lies to the model's own
  dev-tuned threshold, `exp(-|logit(score) - logit(threshold)|)` (1 on the threshold). The
  distance is in log-odds because thresholds differ: a score of 0.01 is far from a
  threshold of 0.15 though only 0.14 away on the probability scale, and every category
  would look "close" to a low threshold on that scale. A sentence counts by its closest
  category, since one undecided category is enough to make the label useful.

`informativeness` is their weighted mean (equal weights by default). Label Studio shows a
prediction's `score` as the model's confidence, so the pre-annotations carry
`1 - informativeness`: sorting tasks by prediction score, lowest first, gives the same order
as `python -m data.active`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model.predictor import Scores
from model.schema import CATEGORIES

STANCE_WEIGHT = 0.5


def stance_entropy(stance: np.ndarray) -> np.ndarray:
    """Entropy of each row of stance probabilities, divided by log(classes): shape (n,)."""
    p = np.clip(np.asarray(stance, dtype=np.float64), 1e-12, 1.0)
    p = p / p.sum(axis=1, keepdims=True)
    return -(p * np.log(p)).sum(axis=1) / np.log(p.shape[1])


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-6, 1.0 - 1e-6)
    return np.log(p) - np.log1p(-p)


def threshold_closeness(categories: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Per sentence and category, exp(-log-odds distance to the threshold): shape (n, c)."""
    return np.exp(-np.abs(_logit(categories) - _logit(thresholds)))


@dataclass(frozen=True)
class Informativeness:
    """Per sentence: the combined value and the two signals behind it."""

    value: np.ndarray  # (n,) in [0, 1], higher = more worth labelling
    stance_entropy: np.ndarray  # (n,)
    closeness: np.ndarray  # (n,) of the closest category
    closest_category: list[str]  # (n,) which category that is

    def explain(self, i: int) -> dict:
        """The figures for one sentence, as stored with a Label Studio task."""
        return {
            "informativeness": round(float(self.value[i]), 4),
            "stance_entropy": round(float(self.stance_entropy[i]), 4),
            "closest_category": self.closest_category[i],
            "category_closeness": round(float(self.closeness[i]), 4),
        }


def informativeness(
    scores: Scores, thresholds: np.ndarray, stance_weight: float = STANCE_WEIGHT
) -> Informativeness:
    """Weighted mean of stance entropy and the closest category's threshold closeness."""
    if not 0.0 <= stance_weight <= 1.0:
        raise ValueError(f"stance_weight must lie in [0, 1], got {stance_weight}")
    entropy = stance_entropy(scores.stance)
    close = threshold_closeness(scores.categories, thresholds)
    best = close.argmax(axis=1) if len(close) else np.zeros(0, dtype=int)
    closest = close[np.arange(len(close)), best] if len(close) else np.zeros(0)
    value = stance_weight * entropy + (1.0 - stance_weight) * closest
    return Informativeness(value, entropy, closest, [CATEGORIES[int(j)] for j in best])
