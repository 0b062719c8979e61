"""Grouped cross-validation: retrain a backend on k folds of all real data, by story.

    python -m training.cv --backend tfidf [--folds 5] [--encoder e5-small-offline]
                          [--set key=value ...] [--out runs/cv/tfidf.json]

One split of a few hundred sentences is a noisy basis for choosing a model; k folds over
every real sentence (train, dev and test together, grouped by story so no story is on both
sides) give a mean and a spread. In each fold the held-out stories are scored; of the rest,
one fold's worth of stories is dev (thresholds are tuned there, exactly as the runner does)
and the others train, with the authored sentences added to train as the config says. The
JSON written here is what `python -m eval --cv FILE` puts in the report beside the
single-split figures. Exit codes as for training (2 usage, 3 data, 4 model).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.model_selection import GroupKFold

from data.records import SPLITS, DataError
from data.validate import DEFAULT_SPLITS_DIR
from model import calibration, exitcodes
from model.fsutil import atomic_write_text
from model.paths import REPO_ROOT
from model.schema import CATEGORIES
from model.scorer import calibration_bins, label_arrays, multilabel_report, stance_report
from training import runner
from training.common import add_overrides_option, load_config, load_dataset

log = logging.getLogger("training.cv")
FIGURES = (
    "category_micro_f1",
    "category_macro_f1",
    "stance_macro_f1",
    "category_ece",
    "stance_ece",
)


def fold_splits(real: list[dict], authored: list[dict], folds: int, seed: int):
    """Yield (fold, {"train", "dev", "test"}) with stories kept whole."""
    groups = [r["story_id"] for r in real]
    stories = sorted(set(groups))
    if len(stories) < folds + 1:
        raise DataError(f"{folds}-fold CV needs more than {folds} stories, found {len(stories)}")
    rng = np.random.default_rng(seed)
    # GroupKFold is deterministic given the order; shuffle story order with the seed.
    rank = {s: i for i, s in enumerate(rng.permutation(stories))}
    keyed = [rank[g] for g in groups]
    parts = [held for _, held in GroupKFold(n_splits=folds).split(real, groups=keyed)]
    for k in range(folds):
        test_idx, dev_idx = set(parts[k]), set(parts[(k + 1) % folds])
        yield (
            k,
            {
                "train": [r for i, r in enumerate(real) if i not in test_idx | dev_idx] + authored,
                "dev": [real[i] for i in sorted(dev_idx)],
                "test": [real[i] for i in sorted(test_idx)],
            },
        )


def fold_figures(fitted, thresholds: dict[str, float], test: list[dict]) -> dict:
    texts, y_cat, y_stance = label_arrays(test)
    scores = calibration.apply(fitted.backend.scores(texts), fitted.calibration)
    t = np.array([thresholds[c] for c in CATEGORIES])
    cats = multilabel_report(y_cat, scores.categories >= t)
    pred = scores.stance.argmax(axis=1)
    stance = stance_report(y_stance, pred)
    return {
        "sentences": len(test),
        "category_micro_f1": cats["micro_f1"],
        "category_macro_f1": cats["macro_f1"],
        "stance_macro_f1": stance["macro_f1"],
        "category_ece": calibration_bins(scores.categories, y_cat)[0],
        "stance_ece": calibration_bins(scores.stance.max(axis=1), pred == y_stance)[0],
    }


def cross_validate(name: str, config: dict, splits_dir: Path, folds: int, **options) -> dict:
    """Per-fold figures and their mean and standard deviation."""
    splits = load_dataset(splits_dir)
    records = [r for s in SPLITS for r in splits[s]]
    real = [r for r in records if r["source"] != "authored"]
    authored = [r for r in records if r["source"] == "authored"]
    rows = []
    for k, fold in fold_splits(real, authored, folds, config["seed"]):
        started = time.perf_counter()
        log.info(
            "fold %d/%d: train %d, dev %d, test %d sentences",
            k + 1,
            folds,
            len(fold["train"]),
            len(fold["dev"]),
            len(fold["test"]),
        )
        with tempfile.TemporaryDirectory() as tmp:
            fitted, thresholds, _, _ = runner.fit_and_tune(
                name, fold, config, Path(tmp) / "model", **options
            )
            row = {"fold": k, **fold_figures(fitted, thresholds, fold["test"])}
        row["seconds"] = round(time.perf_counter() - started, 1)
        log.info("fold %d: %s", k + 1, {f: round(row[f], 3) for f in FIGURES})
        rows.append(row)
    summary = {
        f: {
            "mean": statistics.fmean(r[f] for r in rows),
            "std": statistics.stdev(r[f] for r in rows) if len(rows) > 1 else 0.0,
        }
        for f in FIGURES
    }
    return {
        "backend": name,
        "folds": folds,
        "unit": "story",
        "seed": config["seed"],
        "config": config,
        "options": {k: str(v) for k, v in options.items() if v is not None},
        "real_sentences": len(real),
        "authored_sentences": len(authored),
        "per_fold": rows,
        "summary": summary,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", required=True, choices=sorted(runner.TRAINERS))
    parser.add_argument("--config", type=Path, default=None, help="default: the backend's")
    parser.add_argument("--data", type=Path, default=DEFAULT_SPLITS_DIR)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--encoder", default=None, help="for backends that take an encoder")
    add_overrides_option(parser)
    parser.add_argument("--out", type=Path, default=None, help="default runs/cv/<backend>.json")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.folds < 2:
        parser.error("--folds must be at least 2")
    module = runner.trainer(args.backend)
    out = args.out or REPO_ROOT / "runs" / "cv" / f"{args.backend}.json"
    options = {"encoder": args.encoder} if args.encoder else {}
    try:
        config = load_config(args.config or module.DEFAULT_CONFIG, args.overrides)
        result = cross_validate(args.backend, config, args.data, args.folds, **options)
    except DataError as exc:
        print(f"cv: data error: {exc}", file=sys.stderr)
        return exitcodes.INPUT
    except tuple(getattr(module, "ERRORS", {})) as exc:
        print(f"cv: error: {exc}", file=sys.stderr)
        return exitcodes.MODEL
    except (ValueError, KeyError, TypeError) as exc:
        print(f"cv: config error: {exc}", file=sys.stderr)
        return exitcodes.USAGE
    atomic_write_text(out, json.dumps(result, indent=2) + "\n")
    s = result["summary"]
    print(
        f"{args.backend}: {args.folds}-fold CV by story over {result['real_sentences']} real "
        + ", ".join(f"{f} {s[f]['mean']:.3f} ± {s[f]['std']:.3f}" for f in FIGURES)
    )
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
