"""What both trainers share: validated data, label arrays, fingerprints, thresholds, config.

Keeping these in one module means the baseline and the transformer see the same data the
same way, tune thresholds by the same rule and record the same provenance in meta.json.
"""

from __future__ import annotations

import hashlib
import logging
import random
import tomllib
from pathlib import Path

import numpy as np

from data.records import SPLITS, DataError, sentence_hash
from data.validate import DEFAULT_SPLITS_DIR, load_splits, validate_splits
from eval.metrics import multilabel_report, stance_report
from model.fsutil import sha256_file
from model.schema import CATEGORIES, STANCES

log = logging.getLogger(__name__)

# Candidate thresholds; the tiny dev set makes extreme values overfit, so the grid is bounded.
THRESHOLD_GRID = np.round(np.arange(0.10, 0.901, 0.05), 2)


def load_dataset(splits_dir: Path = DEFAULT_SPLITS_DIR) -> dict[str, list[dict]]:
    """Train/dev/test records, refused with every problem listed if validation fails."""
    splits = load_splits(splits_dir)
    problems = validate_splits(splits)
    if problems:
        shown = "\n  ".join(problems[:20])
        raise DataError(f"{splits_dir}: {len(problems)} validation problem(s):\n  {shown}")
    return splits


def label_arrays(records: list[dict]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Texts, a (n, categories) 0/1 matrix and a (n,) stance index vector."""
    texts = [r["text"] for r in records]
    y_cat = np.array(
        [[c in r["categories"] for c in CATEGORIES] for r in records], dtype=np.int64
    ).reshape(len(records), len(CATEGORIES))
    y_stance = np.array([STANCES.index(r["stance"]) for r in records], dtype=np.int64)
    return texts, y_cat, y_stance


def data_fingerprint(splits_dir: Path = DEFAULT_SPLITS_DIR) -> dict:
    """SHA-256 of each split file and of all together, with sentence counts, for meta.json."""
    files = {s: sha256_file(Path(splits_dir) / f"{s}.jsonl") for s in SPLITS}
    combined = hashlib.sha256("".join(files[s] for s in SPLITS).encode()).hexdigest()
    counts = {s: len(load_splits(splits_dir)[s]) for s in SPLITS}
    return {"sha256": combined, "files": files, "sentences": counts}


def seen_hashes(splits: dict[str, list[dict]]) -> list[str]:
    """Hashes of the train and dev sentences: what a model was fitted and tuned on."""
    return [sentence_hash(r["text"]) for s in ("train", "dev") for r in splits[s]]


def tune_thresholds(
    scores: np.ndarray, y_true: np.ndarray, grid: np.ndarray = THRESHOLD_GRID
) -> tuple[dict[str, float], dict[str, str]]:
    """Per-category threshold maximising dev F1; ties go to the value nearest 0.5.

    A category with no positive dev sentence cannot be tuned: it keeps 0.5, and the second
    return value says so per label (`tuned` or `default: no dev positives`), so the model
    card can tell an evaluator which thresholds rest on evidence.
    """
    thresholds, how = {}, {}
    for j, name in enumerate(CATEGORIES):
        truth = y_true[:, j].astype(bool)
        if not truth.any():
            thresholds[name], how[name] = 0.5, "default: no dev positives"
            continue
        best, best_key = 0.5, None
        for t in grid:
            pred = scores[:, j] >= t
            tp = float((pred & truth).sum())
            denom = float(pred.sum() + truth.sum())
            f1 = 2 * tp / denom if denom else 0.0
            key = (round(f1, 9), -abs(float(t) - 0.5))
            if best_key is None or key > best_key:
                best, best_key = float(t), key
        thresholds[name], how[name] = best, "tuned"
    return thresholds, how


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


def seed_everything(seed: int) -> None:
    """Seed Python and NumPy (and torch when it is already imported by the caller)."""
    random.seed(seed)
    np.random.seed(seed)
    import sys

    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(seed)


def _parse_value(raw: str) -> object:
    """A command-line override value as TOML (numbers, lists, booleans), else a string."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def load_config(path: Path, overrides: list[str] | None = None) -> dict:
    """A TOML config with `section.key=value` overrides applied (unknown keys refused)."""
    try:
        config = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"cannot read config {path}: {exc}") from exc
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ValueError(f"override {item!r} must look like section.key=value")
        *parents, leaf = key.strip().split(".")
        node = config
        for part in parents:
            if not isinstance(node.get(part), dict):
                raise ValueError(f"override {item!r}: no config section {part!r}")
            node = node[part]
        if leaf not in node:
            raise ValueError(f"override {item!r}: unknown key {key!r} in {path}")
        node[leaf] = _parse_value(raw.strip())
    return config
