"""The TF-IDF + linear baseline's model object and backend loader.

Word 1-2-grams carry the topic words (kampanye, politik uang, mutasi); character 2-5-grams
inside word boundaries catch Indonesian affixes and spelling variants (mem-/di-/-kan, hoax
vs hoaks) that a word vocabulary built from a few hundred sentences would miss. One feature
space serves both heads, so a sentence is vectorised once per prediction.

Only scikit-learn, NumPy and joblib are imported here, keeping `predict.py --model tfidf`
free of torch and transformers.
"""

from __future__ import annotations

import dataclasses
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


def load_backend(folder: Path, meta: dict, fast: bool = True) -> TfidfModel:
    """Registry entry point; the manifest has already been verified by `read_meta`.

    `fast=False` keeps scikit-learn's own featuriser (the benchmark's reference).
    """
    model = joblib.load(Path(folder) / MODEL_FILE)
    if not isinstance(model, TfidfModel):
        raise TypeError(f"{folder}/{MODEL_FILE} holds {type(model).__name__}, not TfidfModel")
    return accelerate(model) if fast else model


_PROBE = [
    "Bawaslu menemukan camat menghadiri deklarasi pasangan calon bupati.",
    "ASN dilarang menjadi anggota  partai politik\tdan pengurus; lihat UU No. 5/2014!",
    "“Netralitas ASN harga mati,” tegas Pj. Bupati, Rabu (23/10/2024).",
    "KAMPANYE hitam & hoaks di media-sosial: 1.250 akun diblokir... ΟΔΟΣ Straße İstanbul",
    "ASN ASN asn netral netral netral\u00a0netralitas\r\npilkada",
    "",
    "a",
]
_WORD_CACHE_LIMIT = 200_000


class _FastTfidf:
    """`TfidfVectorizer.transform` with the same numbers and less Python per feature.

    scikit-learn counts features in a Python loop with a dict per sentence and then sorts
    each row; here the vectoriser's own analyzer still produces the n-grams, vocabulary ids
    are gathered into one array per batch, and counting is one vectorised `np.unique`.
    For `char_wb` (n-grams never cross whitespace, so a sentence's counts are the sum of
    its words') each distinct word is analysed once and its ids are cached: words repeat,
    so most of the work of a new sentence is already done. TF-IDF weighting follows the
    fitted vectoriser's public parameters.
    """

    def __init__(self, vectorizer) -> None:
        self.vectorizer = vectorizer
        self.analyze = vectorizer.build_analyzer()
        self.vocabulary = vectorizer.vocabulary_
        self.per_word = vectorizer.analyzer == "char_wb"
        self.cache: dict[str, np.ndarray] = {}

    def _word_ids(self, word: str) -> np.ndarray:
        vocab = self.vocabulary
        return np.array([vocab[g] for g in self.analyze(word) if g in vocab], dtype=np.int32)

    def _ids(self, docs: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Vocabulary ids of all n-grams of all docs, and where each doc's ids end."""
        ends = []
        if self.per_word:
            cache = self.cache
            if len(cache) > _WORD_CACHE_LIMIT:
                cache.clear()  # a long-running stream must not grow without bound
            parts = []
            n = 0
            for doc in docs:
                for word in doc.split():
                    found = cache.get(word)
                    if found is None:
                        found = cache[word] = self._word_ids(word)
                    parts.append(found)
                    n += len(found)
                ends.append(n)
            ids = np.concatenate(parts) if parts else np.zeros(0, np.int32)
        else:
            get = self.vocabulary.get
            flat: list[int] = []
            for doc in docs:
                flat += [i for i in map(get, self.analyze(doc)) if i is not None]
                ends.append(len(flat))
            ids = np.asarray(flat, dtype=np.int32)
        return ids, np.asarray(ends, dtype=np.int64)

    def transform(self, docs: Sequence[str]):
        import scipy.sparse as sp
        from sklearn.preprocessing import normalize

        vec = self.vectorizer
        n_docs, n_features = len(docs), len(self.vocabulary)
        ids, ends = self._ids(docs)
        # Count (row, feature) pairs: sort their combined keys once, then run lengths.
        kind = np.int32 if (n_docs + 1) * n_features < 2**31 else np.int64
        keys = np.repeat(np.arange(n_docs, dtype=kind), np.diff(ends, prepend=0))
        keys *= n_features
        keys += ids
        keys.sort()
        first = np.empty(len(keys), dtype=bool)
        first[:1] = True
        np.not_equal(keys[1:], keys[:-1], out=first[1:])
        starts = np.flatnonzero(first)
        keys = keys[starts]
        counts = np.diff(starts, append=len(first))
        indptr = np.searchsorted(keys, np.arange(n_docs + 1, dtype=kind) * n_features)
        data = np.ones(len(keys), vec.dtype) if vec.binary else counts.astype(vec.dtype)
        x = sp.csr_array(
            (data, (keys % n_features).astype(np.int32), indptr.astype(np.int32)),
            shape=(n_docs, n_features),
        )
        if vec.sublinear_tf:
            np.log(x.data, x.data)
            x.data += 1.0
        if vec.use_idf:
            x.data *= vec.idf_[x.indices]
        if vec.norm is not None:
            x = normalize(x, norm=vec.norm, copy=False)
        return x


class _FastUnion:
    """A FeatureUnion whose TF-IDF parts go through `_FastTfidf`."""

    def __init__(self, union) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.parts = [
            _FastTfidf(part)
            if isinstance(part, TfidfVectorizer) and part.input == "content"
            else part
            for _name, part in union.transformer_list
        ]

    def transform(self, docs: Sequence[str]):
        import scipy.sparse as sp

        return sp.hstack([part.transform(docs) for part in self.parts], format="csr")


def accelerate(model: TfidfModel) -> TfidfModel:
    """The same model with the faster featuriser, if it provably gives equal scores.

    The check runs once per load on probe sentences (odd whitespace, Greek, Turkish dotted
    I, empty text); any difference or surprise keeps the plain scikit-learn path.
    """
    union = model.features
    if getattr(union, "transformer_weights", None) or not hasattr(union, "transformer_list"):
        return model
    try:
        fast = dataclasses.replace(model, features=_FastUnion(union))
        want, got = model.scores(_PROBE), fast.scores(_PROBE)
        same = np.allclose(want.categories, got.categories, rtol=0, atol=1e-9) and np.allclose(
            want.stance, got.stance, rtol=0, atol=1e-9
        )
    except Exception:  # any surprise: keep the plain, known-good path
        return model
    return fast if same else model
