"""Train the TF-IDF + linear baseline.

    python -m training.train_tfidf [--config training/configs/tfidf.toml] [--out models/tfidf]
                                   [--data data/splits] [--set section.key=value ...]

Hyper-parameters (C for each head) are chosen by cross-validation on train grouped by
article, so sentences of one article never score a model fitted on their neighbours;
per-category thresholds are then tuned on dev. Test is never read here.
Exit codes (`model/exitcodes.py`): 0 ok, 2 usage/config error, 3 data error.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold
from sklearn.multiclass import OneVsRestClassifier

from data.records import DataError
from data.validate import DEFAULT_SPLITS_DIR
from eval.metrics import multilabel_report, stance_report
from model import exitcodes
from model.artifact import base_meta, save_artifact, write_seen
from model.paths import REPO_ROOT
from model.tfidf import TfidfModel, make_features, save_model
from training.common import (
    data_fingerprint,
    dev_metrics,
    label_arrays,
    load_config,
    load_dataset,
    seed_everything,
    seen_hashes,
    tune_thresholds,
)

log = logging.getLogger("training.train_tfidf")
DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "tfidf.toml"


def _category_clf(c: float, class_weight: str | None, seed: int) -> OneVsRestClassifier:
    return OneVsRestClassifier(
        LogisticRegression(C=c, class_weight=class_weight, solver="liblinear", random_state=seed)
    )


def _stance_clf(c: float, class_weight: str | None, seed: int) -> LogisticRegression:
    return LogisticRegression(C=c, class_weight=class_weight, max_iter=5000, random_state=seed)


def _features(config: dict):
    f = config["features"]
    return make_features(
        f["word_ngram_range"], f["char_ngram_range"], f["min_df"], f["sublinear_tf"]
    )


def choose_c(
    config: dict, texts: list[str], y_cat: np.ndarray, y_stance: np.ndarray, groups: list[str]
) -> tuple[float, float, dict]:
    """Pick C for each head by grouped K-fold CV on train; returns the CV table too."""
    seed = config["seed"]
    n_groups = len(set(groups))
    folds = min(config["cv"]["folds"], n_groups)
    if folds < 2:
        raise DataError(f"grouped CV needs at least 2 training articles, found {n_groups}")
    cat_grid, st_grid = config["categories"]["C_grid"], config["stance"]["C_grid"]
    cat_pred = {c: np.zeros_like(y_cat) for c in cat_grid}
    st_pred = {c: np.zeros_like(y_stance) for c in st_grid}
    texts_arr = np.array(texts, dtype=object)
    for k, (fit, held) in enumerate(GroupKFold(n_splits=folds).split(texts, groups=groups), 1):
        log.info("CV fold %d/%d: fit %d, held out %d sentences", k, folds, len(fit), len(held))
        features = _features(config).fit(texts_arr[fit])
        x_fit, x_held = features.transform(texts_arr[fit]), features.transform(texts_arr[held])
        for c in cat_grid:
            clf = _category_clf(c, config["categories"]["class_weight"], seed)
            cat_pred[c][held] = clf.fit(x_fit, y_cat[fit]).predict_proba(x_held) >= 0.5
        for c in st_grid:
            clf = _stance_clf(c, config["stance"]["class_weight"], seed)
            st_pred[c][held] = clf.fit(x_fit, y_stance[fit]).predict(x_held)
    cat_cv = {c: multilabel_report(y_cat, cat_pred[c])["micro_f1"] for c in cat_grid}
    st_cv = {c: stance_report(y_stance, st_pred[c])["macro_f1"] for c in st_grid}
    best_cat = max(cat_grid, key=lambda c: (round(cat_cv[c], 9), -c))
    best_st = max(st_grid, key=lambda c: (round(st_cv[c], 9), -c))
    table = {
        "folds": folds,
        "category_micro_f1_by_C": {str(c): v for c, v in cat_cv.items()},
        "stance_macro_f1_by_C": {str(c): v for c, v in st_cv.items()},
    }
    return best_cat, best_st, table


def train(config: dict, splits_dir: Path, out: Path) -> dict:
    """Fit, tune thresholds on dev, save the artifact; returns its meta."""
    started = time.perf_counter()
    seed = config["seed"]
    seed_everything(seed)
    splits = load_dataset(splits_dir)
    texts, y_cat, y_stance = label_arrays(splits["train"])
    if not texts:
        raise DataError(f"{splits_dir}: the train split is empty")
    groups = [r["article_id"] for r in splits["train"]]
    log.info("train: %d sentences from %d groups", len(texts), len(set(groups)))
    with warnings.catch_warnings():
        # A fold without some label makes OvR warn; that label simply predicts 0 there.
        warnings.filterwarnings("ignore", message="Label not .* is present in all training")
        warnings.filterwarnings("ignore", category=ConvergenceWarning)
        c_cat, c_st, cv_table = choose_c(config, texts, y_cat, y_stance, groups)
        log.info("chosen C: categories %s, stance %s", c_cat, c_st)
        features = _features(config).fit(texts)
        x = features.transform(texts)
        model = TfidfModel(
            features=features,
            categories=_category_clf(c_cat, config["categories"]["class_weight"], seed).fit(
                x, y_cat
            ),
            stance=_stance_clf(c_st, config["stance"]["class_weight"], seed).fit(x, y_stance),
        )
    dev_texts, dev_cat, dev_stance = label_arrays(splits["dev"])
    dev_scores = model.scores(dev_texts)
    thresholds, how = tune_thresholds(dev_scores.categories, dev_cat)
    metrics = dev_metrics(dev_scores.categories, dev_scores.stance, dev_cat, dev_stance, thresholds)
    seconds = time.perf_counter() - started
    meta = base_meta(
        backend="tfidf",
        thresholds=thresholds,
        data=data_fingerprint(splits_dir),
        config=config,
        seed=seed,
        dev_metrics=metrics,
        extra={
            "threshold_source": how,
            "chosen": {"categories_C": c_cat, "stance_C": c_st},
            "cv": cv_table,
            "train_seconds": round(seconds, 2),
        },
    )
    seen = seen_hashes(splits)

    def write(folder: Path) -> None:
        save_model(model, folder)
        write_seen(folder, seen)

    save_artifact(out, write, meta)
    log.info(
        "saved %s (version %s) in %.1f s; dev category micro-F1 %.3f, stance macro-F1 %.3f",
        out,
        meta["version"],
        seconds,
        metrics["category_micro_f1"],
        metrics["stance_macro_f1"],
    )
    return meta


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train the TF-IDF + linear baseline.")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--data", type=Path, default=DEFAULT_SPLITS_DIR, help="splits folder")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "models" / "tfidf")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. seed=7",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = load_config(args.config, args.overrides)
    except ValueError as exc:
        print(f"train_tfidf: error: {exc}", file=sys.stderr)
        return exitcodes.USAGE
    try:
        train(config, args.data, args.out)
    except DataError as exc:
        print(f"train_tfidf: data error: {exc}", file=sys.stderr)
        return exitcodes.INPUT
    except (KeyError, TypeError) as exc:
        print(f"train_tfidf: config error: missing or wrong key {exc}", file=sys.stderr)
        return exitcodes.USAGE
    return 0


if __name__ == "__main__":
    sys.exit(main())
