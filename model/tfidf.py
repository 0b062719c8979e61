"""The TF-IDF + linear baseline's model object and backend loader.

Word 1-2-grams carry the topic words (kampanye, politik uang, mutasi); character 2-5-grams
inside word boundaries catch Indonesian affixes and spelling variants (mem-/di-/-kan, hoax
vs hoaks) that a word vocabulary built from a few hundred sentences would miss. One feature
space serves both heads, so a sentence is vectorised once per prediction.

Only scikit-learn, NumPy and joblib are imported here, keeping `predict.py --model tfidf`
free of torch and transformers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import FeatureUnion

from model.predictor import Scores
from model.schema import STANCES

MODEL_FILE = "model.joblib"


@dataclass
class TfidfModel:
    """Fitted features, a one-vs-rest category classifier and a multinomial stance one."""

    features: FeatureUnion
    categories: object  # OneVsRestClassifier(LogisticRegression)
    stance: object  # LogisticRegression (multinomial)

    def scores(self, sentences: Sequence[str]) -> Scores:
        x = self.features.transform(list(sentences))
        # A stance absent from train gets no column from scikit-learn: place the columns by
        # `classes_` so the output always has one column per schema stance (absent ones 0).
        stance = np.zeros((x.shape[0], len(STANCES)))
        stance[:, self.stance.classes_] = self.stance.predict_proba(x)
        return Scores(
            categories=np.asarray(self.categories.predict_proba(x), dtype=np.float64),
            stance=stance,
        )


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


def save_model(model: TfidfModel, folder: Path) -> None:
    """Write the fitted model into an artifact folder (called inside `save_artifact`)."""
    joblib.dump(model, Path(folder) / MODEL_FILE, compress=3)


def load_backend(folder: Path, meta: dict) -> TfidfModel:
    """Registry entry point; the manifest has already been verified by `read_meta`."""
    model = joblib.load(Path(folder) / MODEL_FILE)
    if not isinstance(model, TfidfModel):
        raise TypeError(f"{folder}/{MODEL_FILE} holds {type(model).__name__}, not TfidfModel")
    return model
