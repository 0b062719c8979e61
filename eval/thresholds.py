"""Which way of tuning category thresholds holds up on stories the tuning did not see.

    python -m eval.thresholds MODEL [MODEL ...] [--halves 200] [--seed 0] [--data DEV.jsonl]

Thresholds are tuned on dev, so dev cannot say how well they transfer. This splits dev's
stories in two at random, refits calibration and tunes thresholds both ways (`global`:
one for all categories; `per_category`: one each, `model.scorer.THRESHOLD_MODES`) on one
half, and scores category micro-F1 on the other half; repeated `--halves` times. It prints,
per model, each mode's mean held-out micro-F1 and the paired difference (global minus per
category) with its 2.5-97.5% range over the splits and how often each mode won. Only the
dev split is read: the choice of default rests on it, never on test.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data.records import DataError, read_jsonl
from data.validate import DEFAULT_SPLITS_DIR
from model import calibration, exitcodes
from model.artifact import ArtifactError
from model.predictor import Scores
from model.scorer import THRESHOLD_MODES, f1_of, label_arrays, tune_thresholds


@dataclass(frozen=True)
class ModeComparison:
    model: str
    held_out_f1: dict[str, float]  # mode -> mean micro-F1 on the held-out halves
    difference: float  # mean of global - per_category
    interval: tuple[float, float]  # 2.5% and 97.5% of that difference over the splits
    global_wins: float  # share of splits where global was better
    per_category_wins: float


def compare_modes(
    raw: Scores, dev: list[dict], halves: int = 200, seed: int = 0, name: str = ""
) -> ModeComparison:
    """Tune on random halves of dev's stories, score on the other halves (see module doc)."""
    _, y_cat, y_stance = label_arrays(dev)
    truth = y_cat.astype(bool)
    stories = np.array([r["story_id"] for r in dev])
    unique = np.unique(stories)
    if len(unique) < 4:
        raise DataError(f"dev has {len(unique)} stories; at least 4 are needed to split it")
    rng = np.random.default_rng(seed)
    f1: dict[str, list[float]] = {m: [] for m in THRESHOLD_MODES}
    for _ in range(halves):
        tune = np.isin(stories, rng.choice(unique, len(unique) // 2, replace=False))
        part = Scores(raw.categories[tune], raw.stance[tune])
        temps = calibration.fit(part, y_cat[tune], y_stance[tune])
        held = Scores(raw.categories[~tune], raw.stance[~tune])
        tuned = calibration.apply(part, temps).categories
        scored = calibration.apply(held, temps).categories
        for mode in THRESHOLD_MODES:
            thresholds, _ = tune_thresholds(tuned, y_cat[tune], mode=mode)
            t = np.array(list(thresholds.values()))
            f1[mode].append(f1_of(scored >= t, truth[~tune]))
    diff = np.array(f1["global"]) - np.array(f1["per_category"])
    low, high = np.percentile(diff, [2.5, 97.5])
    return ModeComparison(
        model=name,
        held_out_f1={m: float(np.mean(v)) for m, v in f1.items()},
        difference=float(diff.mean()),
        interval=(float(low), float(high)),
        global_wins=float((diff > 0).mean()),
        per_category_wins=float((diff < 0).mean()),
    )


def table(rows: list[ModeComparison]) -> str:
    lines = [
        "| model | held-out micro-F1, global | per category | global - per category "
        "[2.5%, 97.5%] | global better / worse |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.model} | {r.held_out_f1['global']:.3f} | {r.held_out_f1['per_category']:.3f}"
            f" | {r.difference:+.3f} [{r.interval[0]:+.3f}, {r.interval[1]:+.3f}]"
            f" | {r.global_wins:.0%} / {r.per_category_wins:.0%} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.thresholds", description=__doc__)
    parser.add_argument("models", nargs="+", help="model names or folders")
    parser.add_argument("--halves", type=int, default=200, help="random splits of dev")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_SPLITS_DIR / "dev.jsonl", help="the dev split"
    )
    args = parser.parse_args(argv)
    if args.halves < 1:
        parser.error("--halves must be at least 1")
    from model.registry import load_predictor

    try:
        dev = read_jsonl(args.data)
        texts = [r["text"] for r in dev]
        rows = []
        for name in args.models:
            predictor = load_predictor(name)
            raw = predictor.backend.scores(texts)  # calibration is refitted per half
            rows.append(compare_modes(raw, dev, args.halves, args.seed, name))
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exitcodes.INPUT
    except ArtifactError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exitcodes.MODEL
    print(table(rows), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
