"""One predictor interface for every backend, used by `predict.py` and `eval/`.

A backend only turns sentences into raw scores (`Scores`); the decisions (per-label
thresholds for categories, arg-max for stance) are made here, once, from the thresholds
stored in the artifact. That keeps "what counts as a flagged category" identical across
backends and tools.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from model.schema import CATEGORIES, STANCES


@dataclass(frozen=True)
class Scores:
    """Raw model output for a batch: category probabilities and stance probabilities."""

    categories: np.ndarray  # (n, len(CATEGORIES)), each in [0, 1]
    stance: np.ndarray  # (n, len(STANCES)), rows sum to 1

    def __post_init__(self) -> None:
        n = self.categories.shape[0]
        if self.categories.shape != (n, len(CATEGORIES)) or self.stance.shape != (
            n,
            len(STANCES),
        ):
            raise ValueError(
                f"scores of shape {self.categories.shape} / {self.stance.shape} do not fit "
                f"{len(CATEGORIES)} categories and {len(STANCES)} stances"
            )


@dataclass(frozen=True)
class Prediction:
    """The decision for one sentence, with the scores behind it."""

    category_scores: dict[str, float]
    categories: list[str]
    stance_probs: dict[str, float]
    stance: str


class Backend(Protocol):
    """What a model backend provides: raw scores for a batch of sentences."""

    def scores(self, sentences: Sequence[str]) -> Scores: ...


@dataclass
class Predictor:
    """A loaded model: backend + the meta.json that came with it."""

    backend: Backend
    meta: dict
    path: Path | None = None
    thresholds: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.thresholds = np.array([self.meta["thresholds"][c] for c in CATEGORIES])

    @property
    def name(self) -> str:
        """Backend name, e.g. `tfidf` or `indobert`."""
        return self.meta["backend"]

    @property
    def version(self) -> str:
        return self.meta["version"]

    def scores(self, sentences: Sequence[str]) -> Scores:
        """The backend's scores, calibrated with the artifact's temperatures if it has any."""
        if not sentences:
            return Scores(np.zeros((0, len(CATEGORIES))), np.zeros((0, len(STANCES))))
        from model import calibration  # it builds on Scores, defined above

        return calibration.apply(self.backend.scores(list(sentences)), self.meta.get("calibration"))

    def decide(self, scores: Scores) -> tuple[np.ndarray, np.ndarray]:
        """Boolean category matrix (score >= threshold) and stance indices (arg-max)."""
        return scores.categories >= self.thresholds, scores.stance.argmax(axis=1)

    def predict(self, sentences: Sequence[str]) -> list[Prediction]:
        scores = self.scores(sentences)
        chosen, stance = self.decide(scores)
        out = []
        for cat_row, chosen_row, stance_row, pick in zip(
            scores.categories, chosen, scores.stance, stance, strict=True
        ):
            out.append(
                Prediction(
                    category_scores=dict(zip(CATEGORIES, map(float, cat_row), strict=True)),
                    categories=[c for c, on in zip(CATEGORIES, chosen_row, strict=True) if on],
                    stance_probs=dict(zip(STANCES, map(float, stance_row), strict=True)),
                    stance=STANCES[int(pick)],
                )
            )
        return out
