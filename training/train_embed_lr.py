"""Train frozen-encoder embeddings + logistic-regression heads.

    python -m training.train_embed_lr --encoder e5-small-offline [--out models/embed_lr]
                                      [--set categories.C_grid=[1.0,4.0] ...]

The encoder is not fitted (unless `[contrastive]` asks for SetFit's first stage, see
`training/contrastive.py`): train sentences are embedded once, and C for each head is
chosen by scikit-learn's GridSearchCV with folds grouped by story, so sentences of one story
never score a head fitted on their neighbours. The shared runner then tunes thresholds on
dev and saves the artifact (`model/embed_lr.py` has the format).
"""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, GroupKFold
from sklearn.multiclass import OneVsRestClassifier

from model import exitcodes
from model.embed_lr import Embedder, EmbedLRBackend, LinearHeads, save_model
from model.encoders import EncoderError, resolve_encoder
from model.schema import CATEGORIES, STANCES
from model.scorer import label_arrays
from model.transformer import load_pretrained_encoder, pick_device
from training import contrastive, runner
from training.common import train_weights
from training.runner import Fitted

log = logging.getLogger("training.train_embed_lr")
NAME = "embed_lr"
DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "embed_lr.toml"
ERRORS = {EncoderError: exitcodes.MODEL}


def _grid(estimator, grid: list[float], key: str, scoring: str, folds: int) -> GridSearchCV:
    return GridSearchCV(
        estimator, {key: grid}, scoring=scoring, cv=GroupKFold(n_splits=folds), n_jobs=1
    )


def fit_heads(
    x: np.ndarray,
    y_cat: np.ndarray,
    y_stance: np.ndarray,
    groups: list[str],
    weights: np.ndarray,
    config: dict,
) -> tuple[LinearHeads, dict]:
    """Both heads, C chosen by grouped CV; categories without a positive predict 0."""
    folds = min(config["cv"]["folds"], len(set(groups)))
    seed = config["seed"]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=ConvergenceWarning)
        warnings.filterwarnings("ignore", message="Label not .* is present in all training")
        cat_lr = LogisticRegression(
            class_weight=config["categories"]["class_weight"], max_iter=2000, random_state=seed
        )
        present = y_cat.any(axis=0)
        cat_search = _grid(
            OneVsRestClassifier(cat_lr),
            config["categories"]["C_grid"],
            "estimator__C",
            "f1_micro",
            folds,
        )
        cat_search.fit(x, y_cat[:, present], groups=groups)
        cat_c = float(cat_search.best_params_["estimator__C"])
        st_search = _grid(
            LogisticRegression(
                class_weight=config["stance"]["class_weight"], max_iter=2000, random_state=seed
            ),
            config["stance"]["C_grid"],
            "C",
            "f1_macro",
            folds,
        )
        st_search.fit(x, y_stance, groups=groups)
        st_c = float(st_search.best_params_["C"])
        # Refit on all of train with the sample weights (authored sentences may weigh less).
        cat_final = [
            LogisticRegression(**(cat_lr.get_params() | {"C": cat_c})).fit(
                x, y_cat[:, j], sample_weight=weights
            )
            for j in np.flatnonzero(present)
        ]
        st_final = LogisticRegression(
            C=st_c, class_weight=config["stance"]["class_weight"], max_iter=2000, random_state=seed
        ).fit(x, y_stance, sample_weight=weights)
    dim = x.shape[1]
    cat_w, cat_b = np.zeros((len(CATEGORIES), dim)), np.full(len(CATEGORIES), -30.0)
    for j, est in zip(np.flatnonzero(present), cat_final, strict=True):
        cat_w[j], cat_b[j] = est.coef_[0], est.intercept_[0]
    st_w, st_b = np.zeros((len(STANCES), dim)), np.full(len(STANCES), -30.0)
    st_w[st_final.classes_], st_b[st_final.classes_] = st_final.coef_, st_final.intercept_
    chosen = {
        "categories_C": cat_c,
        "stance_C": st_c,
        "cv_category_micro_f1": float(cat_search.best_score_),
        "cv_stance_macro_f1": float(st_search.best_score_),
    }
    return LinearHeads(cat_w, cat_b, st_w, st_b), chosen


def fit(
    splits: dict[str, list[dict]], config: dict, out: Path | None = None, encoder: str | None = None
) -> Fitted:
    source = resolve_encoder(encoder)
    log.info("encoder %r -> %s (%s)", source.name, source.path, source.kind)
    enc, tokenizer = load_pretrained_encoder(source)
    mcfg = config["model"]
    ccfg = config.get("contrastive", {"pairs_per_sentence": 0})
    tuned = None
    if ccfg["pairs_per_sentence"] > 0:
        enc.to(pick_device())
        tuned = contrastive.tune(
            enc,
            tokenizer,
            splits["train"],
            mcfg["text_prefix"],
            mcfg["max_length"],
            ccfg,
            config["seed"],
        )
    # The artifact stores the encoder in float16; round the weights the same way now, so
    # the heads are fitted (and thresholds tuned) on exactly the embeddings it will serve.
    enc = enc.half().float()
    embedder = Embedder(enc, tokenizer, mcfg["text_prefix"], mcfg["max_length"])
    texts, y_cat, y_stance = label_arrays(splits["train"])
    groups = [r.get("story_id", r["article_id"]) for r in splits["train"]]
    log.info("embedding %d train sentences", len(texts))
    x = embedder.embed(texts)
    heads, chosen = fit_heads(
        x, y_cat, y_stance, groups, train_weights(splits["train"], config), config
    )
    log.info("chosen %s", chosen)
    backend = EmbedLRBackend(embedder, heads)
    return Fitted(
        backend=backend,
        write_files=lambda folder: save_model(backend, folder),
        meta={
            "encoder": source.name,
            "encoder_source": source.describe(),
            "base_model": source.base_model,
            "text_prefix": mcfg["text_prefix"],
            "max_length": mcfg["max_length"],
            "pooling": "mean, unit length",
            "chosen": chosen,
            "contrastive": tuned,
        },
        config={**config, "encoder": source.name},
    )


def main(argv: list[str] | None = None) -> int:
    return runner.main(NAME, argv)


if __name__ == "__main__":
    sys.exit(main())
