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
from model.fsutil import sha256_file

log = logging.getLogger(__name__)


def load_dataset(splits_dir: Path = DEFAULT_SPLITS_DIR) -> dict[str, list[dict]]:
    """Train/dev/test records, refused with every problem listed if validation fails."""
    splits = load_splits(splits_dir)
    problems = validate_splits(splits)
    if problems:
        shown = "\n  ".join(problems[:20])
        raise DataError(f"{splits_dir}: {len(problems)} validation problem(s):\n  {shown}")
    return splits


def data_fingerprint(splits_dir: Path = DEFAULT_SPLITS_DIR) -> dict:
    """SHA-256 of each split file and of all together, with sentence counts, for meta.json."""
    files = {s: sha256_file(Path(splits_dir) / f"{s}.jsonl") for s in SPLITS}
    combined = hashlib.sha256("".join(files[s] for s in SPLITS).encode()).hexdigest()
    counts = {s: len(load_splits(splits_dir)[s]) for s in SPLITS}
    return {"sha256": combined, "files": files, "sentences": counts}


def seen_hashes(splits: dict[str, list[dict]]) -> list[str]:
    """Hashes of the train and dev sentences: what a model was fitted and tuned on."""
    return [sentence_hash(r["text"]) for s in ("train", "dev") for r in splits[s]]


def authored_weight(config: dict) -> float:
    """Training weight of authored sentences: config `authored` = "keep", "drop" or 0..1."""
    value = config.get("authored", "keep")
    if value == "keep":
        return 1.0
    if value == "drop":
        return 0.0
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1:
        return float(value)
    raise ValueError(f"authored must be 'keep', 'drop' or a weight in [0, 1], not {value!r}")


def train_weights(records: list[dict], config: dict) -> np.ndarray:
    """Per-sentence sample weights: 1 for real sentences, the authored weight otherwise."""
    w = authored_weight(config)
    return np.array([w if r["source"] == "authored" else 1.0 for r in records])


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


def add_overrides_option(parser, help_text: str = "override a config key, e.g. seed=7") -> None:
    """The repeatable `--set section.key=value` option that `load_config` applies."""
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help_text
    )


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
