"""Train the TF-IDF + linear baseline.

    python -m training.train_tfidf [--config training/configs/tfidf.toml] [--out models/tfidf]
                                   [--data data/splits] [--set section.key=value ...]

Hyper-parameters (C for each head) are chosen by cross-validation on train grouped by
story, so sentences of one story never score a model fitted on their neighbours; the
shared runner (`training/runner.py`) then tunes per-category thresholds on dev and saves
the artifact. Test is never read here. Only fitting uses scikit-learn: the fitted objects
are exported to plain arrays (`model.tfidf.export_sklearn`), which is what is saved and what
`predict.py` scores with NumPy.
Exit codes (`model/exitcodes.py`): 0 ok, 2 usage/config error, 3 data error.
"""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import FeatureUnion

from data.records import DataError
from model.schema import CATEGORIES
from model.scorer import label_arrays, multilabel_report, stance_report
from model.tfidf import export_sklearn, save_model, scorer
from training import runner
from training.common import authored_weight
from training.runner import Fitted

log = logging.getLogger("training.train_tfidf")
NAME = "tfidf"
DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "tfidf.toml"


def make_features(
    word_ngram_range: tuple[int, int],
    char_ngram_range: tuple[int, int],
    min_df: int = 1,
    sublinear_tf: bool = True,
) -> FeatureUnion:
    """Unfitted word + character TF-IDF features (float32 to halve memory and time)."""
    common = {
        "lowercase": True,
        "sublinear_tf": sublinear_tf,
        "min_df": min_df,
        "dtype": np.float32,
    }
    return FeatureUnion(
        [
            (
                "word",
                TfidfVectorizer(
                    analyzer="word",
                    ngram_range=tuple(word_ngram_range),
                    token_pattern=r"(?u)\b\w[\w-]*\b",
                    **common,
                ),
            ),
            (
                "char",
                TfidfVectorizer(analyzer="char_wb", ngram_range=tuple(char_ngram_range), **common),
            ),
        ]
    )


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
) -> tuple[list[float], float, dict]:
    """Pick C for each head by grouped K-fold CV on train; returns the CV table too.

    Categories get one C for all (best CV micro-F1 at 0.5) or, with
    `categories.per_category_C`, each its own (best CV F1 of that category, ties to the
    smaller C): rare categories may want stronger regularisation than frequent ones, and
    the same CV predictions answer both questions at no extra cost.
    """
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
    reports = {c: multilabel_report(y_cat, cat_pred[c]) for c in cat_grid}
    cat_cv = {c: reports[c]["micro_f1"] for c in cat_grid}
    st_cv = {c: stance_report(y_stance, st_pred[c])["macro_f1"] for c in st_grid}
    shared = max(cat_grid, key=lambda c: (round(cat_cv[c], 9), -c))
    if config["categories"].get("per_category_C", False):
        per_cat = [
            max(cat_grid, key=lambda c, n=name: (round(reports[c]["per_label"][n]["f1"], 9), -c))
            for name in CATEGORIES
        ]
    else:
        per_cat = [shared] * len(CATEGORIES)
    best_st = max(st_grid, key=lambda c: (round(st_cv[c], 9), -c))
    table = {
        "folds": folds,
        "category_micro_f1_by_C": {str(c): v for c, v in cat_cv.items()},
        "category_f1_by_C": {
            n: {str(c): reports[c]["per_label"][n]["f1"] for c in cat_grid} for n in CATEGORIES
        },
        "stance_macro_f1_by_C": {str(c): v for c, v in st_cv.items()},
    }
    return per_cat, best_st, table


def fit_sklearn(
    config: dict,
    texts: list[str],
    y_cat: np.ndarray,
    y_stance: np.ndarray,
    c_cat: float | list[float],
    c_st: float,
) -> tuple[FeatureUnion, OneVsRestClassifier, LogisticRegression]:
    """The fitted scikit-learn features, category and stance models (on all of `texts`).

    `c_cat` is one C for all categories or one per category. One-vs-rest fits every
    category on its own, so a model with per-category C is a one-vs-rest fit per distinct
    C, keeping from each the binary models of the categories that chose it.
    """
    seed = config["seed"]
    if isinstance(c_cat, int | float):
        c_cat = [c_cat] * len(CATEGORIES)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Label not .* is present in all training")
        warnings.filterwarnings("ignore", category=ConvergenceWarning)
        features = _features(config).fit(texts)
        x = features.transform(texts)
        weight = config["categories"]["class_weight"]
        by_c = {c: _category_clf(c, weight, seed).fit(x, y_cat) for c in sorted(set(c_cat))}
        categories = by_c[c_cat[0]]
        categories.estimators_ = [by_c[c].estimators_[j] for j, c in enumerate(c_cat)]
        stance = _stance_clf(c_st, config["stance"]["class_weight"], seed)
        return features, categories, stance.fit(x, y_stance)


def fit(splits: dict[str, list[dict]], config: dict, out: Path | None = None) -> Fitted:
    """Choose C per head by grouped CV on train, then fit both heads on all of train.

    The fitted scikit-learn objects are exported to plain arrays at once, and the backend
    handed back (which scores dev for thresholds and calibration) is the NumPy scorer of
    those arrays: the same code and numbers `predict.py` will use.
    """
    if authored_weight(config) not in (0.0, 1.0):
        raise ValueError("the TF-IDF baseline takes authored = 'keep' or 'drop', not a weight")
    texts, y_cat, y_stance = label_arrays(splits["train"])
    groups = [r.get("story_id", r["article_id"]) for r in splits["train"]]
    log.info("train: %d sentences from %d groups", len(texts), len(set(groups)))
    with warnings.catch_warnings():
        # A fold without some label makes OvR warn; that label simply predicts 0 there.
        warnings.filterwarnings("ignore", message="Label not .* is present in all training")
        warnings.filterwarnings("ignore", category=ConvergenceWarning)
        c_cat, c_st, cv_table = choose_c(config, texts, y_cat, y_stance, groups)
    log.info("chosen C: categories %s, stance %s", c_cat, c_st)
    exported = export_sklearn(*fit_sklearn(config, texts, y_cat, y_stance, c_cat, c_st))
    return Fitted(
        backend=scorer(exported),
        write_files=lambda folder: save_model(exported, folder),
        meta={
            "chosen": {
                "categories_C": c_cat[0]
                if len(set(c_cat)) == 1
                else dict(zip(CATEGORIES, c_cat, strict=True)),
                "stance_C": c_st,
            },
            "cv": cv_table,
        },
    )


def train(config: dict, splits_dir: Path, out: Path) -> dict:
    """Fit, tune thresholds on dev, save the artifact; returns its meta."""
    return runner.train(NAME, config, splits_dir, out).meta


def main(argv: list[str] | None = None) -> int:
    return runner.main(NAME, argv)


if __name__ == "__main__":
    sys.exit(main())
