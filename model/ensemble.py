"""An ensemble backend: a weighted average of other backends' probabilities.

TF-IDF sees surface words and affixes; a sentence encoder sees meaning across paraphrase.
Their errors differ, so averaging their calibrated-ish probabilities is a cheap gain. The
artifact holds each member's files under `members/<i>_<backend>/` (one manifest covers
them all) and, in meta.json, each member's backend name, its own meta fields and its weight.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from model.predictor import Backend, Scores

MEMBERS_DIR = "members"


class EnsembleBackend:
    """Scores = sum of weight x member scores (weights sum to 1)."""

    def __init__(self, members: list[Backend], weights: Sequence[float]) -> None:
        if len(members) != len(weights) or not members:
            raise ValueError("an ensemble needs one weight per member, and a member")
        w = np.asarray(weights, dtype=np.float64)
        if (w < 0).any() or not np.isclose(w.sum(), 1.0):
            raise ValueError(f"ensemble weights must be non-negative and sum to 1, got {w}")
        self.members = members
        self.weights = w

    def member_scores(self, sentences: Sequence[str]) -> list[Scores]:
        return [m.scores(sentences) for m in self.members]

    @staticmethod
    def combine(parts: list[Scores], weights: np.ndarray) -> Scores:
        cat = sum(w * p.categories for w, p in zip(weights, parts, strict=True))
        stance = sum(w * p.stance for w, p in zip(weights, parts, strict=True))
        return Scores(categories=cat, stance=stance)

    def scores(self, sentences: Sequence[str]) -> Scores:
        return self.combine(self.member_scores(sentences), self.weights)


def member_dir(folder: Path, index: int, backend: str) -> Path:
    return Path(folder) / MEMBERS_DIR / f"{index}_{backend}"


def load_backend(folder: Path, meta: dict) -> EnsembleBackend:
    """Registry entry point: load each member with its own backend's loader."""
    from model.registry import BACKENDS

    members = []
    for i, m in enumerate(meta["members"]):
        module_name, func_name = BACKENDS[m["backend"]].split(":")
        loader = getattr(importlib.import_module(module_name), func_name)
        members.append(loader(member_dir(folder, i, m["backend"]), m["meta"]))
    return EnsembleBackend(members, [m["weight"] for m in meta["members"]])
