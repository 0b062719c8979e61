"""The TF-IDF + linear baseline: its pickle-free artifact and a NumPy-only scorer.

Word 1-2-grams carry the topic words (kampanye, politik uang, mutasi); character 2-5-grams
inside word boundaries catch Indonesian affixes and spelling variants (mem-/di-/-kan, hoax
vs hoaks) that a word vocabulary built from a few hundred sentences would miss. One feature
space serves both heads, so a sentence is vectorised once per prediction.

scikit-learn fits the model (`training/train_tfidf.py`); `export_sklearn` turns the fitted
objects into plain data, and this module scores with NumPy alone. Why not keep the fitted
objects: a joblib pickle runs code when it is loaded (anyone who can replace the folder can
run anything), and importing scikit-learn costs `predict.py` seconds per call while the
arithmetic takes milliseconds. The artifact is two files:

- `tfidf.json`: the format id, each vectoriser's parameters (analyzer, ngram_range,
  lowercase, strip_accents, token_pattern, binary, sublinear_tf, norm, dtype, size) and the
  heads' layout (stance `classes_`, categories that were constant in training);
- `tfidf.safetensors` (plain arrays, read with `safetensors.numpy`): per vectoriser
  `<name>.terms` (its vocabulary as UTF-8, terms joined by "\\n" in column order) and
  `<name>.idf` (if it uses idf); `categories.weights` (features x categories, `coef_.T`,
  float64 from liblinear) and `categories.intercept`; `stance.weights` (features x `coef_`
  rows, in `coef_`'s dtype: float32 for lbfgs on float32 features) and `stance.intercept`.

The scorer reproduces scikit-learn step by step (analyzer, counts, sublinear tf, idf, l2
norm, then `predict_proba` of a one-vs-rest binary logistic regression per category and of
a multinomial one for stance), down to the dtype and order of float32 sums, so features
and stance probabilities are scikit-learn's bit for bit and category scores agree to about
1e-16; `tests/test_tfidf.py` checks them on every dataset sentence. Settings it cannot
reproduce are refused when the model is exported, never approximated.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import pairwise, repeat
from pathlib import Path

import numpy as np

from model.artifact import ArtifactError
from model.predictor import Scores
from model.schema import CATEGORIES, STANCES

FORMAT = "netralitas-tfidf/1"
CONFIG_FILE = "tfidf.json"
ARRAYS_FILE = "tfidf.safetensors"
LEGACY_FILE = "model.joblib"  # what older versions saved; refused, never unpickled
ANALYZERS = ("word", "char", "char_wb")
STRIP_ACCENTS = (None, "ascii", "unicode")
NORMS = (None, "l2")
DTYPES = ("float32", "float64")
_WHITE_SPACES = re.compile(r"\s\s+")  # scikit-learn's `_VectorizerMixin._white_spaces`
_WORD_CACHE_LIMIT = 200_000
_CHUNK_VALUES = 1 << 16  # bounds the (values x outputs) temporary of the linear heads


# --------------------------------------------------------------------------- text analysis


def _strip_accents_unicode(s: str) -> str:
    """scikit-learn's `strip_accents_unicode`: NFKD, then drop combining marks."""
    try:
        s.encode("ASCII", errors="strict")
        return s
    except UnicodeEncodeError:
        normalized = unicodedata.normalize("NFKD", s)
        return "".join([c for c in normalized if not unicodedata.combining(c)])


def _strip_accents_ascii(s: str) -> str:
    """scikit-learn's `strip_accents_ascii`: NFKD, then drop what is not ASCII."""
    return unicodedata.normalize("NFKD", s).encode("ASCII", "ignore").decode("ASCII")


_ACCENT_FUNCTIONS = {"ascii": _strip_accents_ascii, "unicode": _strip_accents_unicode}


def _word_ngrams(tokens: list[str], min_n: int, max_n: int) -> list[str]:
    """scikit-learn's `_word_ngrams` (no stop words): n-grams joined by one space, all
    n-grams of one n in order of position, n from min_n up."""
    out: list[str] = []
    for grams in _word_ngram_runs(tokens, min_n, max_n):
        out += grams
    return out


def _word_ngram_runs(tokens: list[str], min_n: int, max_n: int) -> Iterator[Iterable[str]]:
    """The n-grams of `_word_ngrams`, one lazy run per n (no list built)."""
    if min_n == 1:
        yield tokens
    for n in range(max(min_n, 2), min(max_n, len(tokens)) + 1):
        yield map(" ".join, zip(*[tokens[i:] for i in range(n)], strict=False))


def _char_ngrams(text: str, min_n: int, max_n: int) -> list[str]:
    """scikit-learn's `_char_ngrams`: runs of white space become one space first."""
    text = _WHITE_SPACES.sub(" ", text)
    text_len = len(text)
    out = list(text) if min_n == 1 else []
    start = 2 if min_n == 1 else min_n
    for n in range(start, min(max_n + 1, text_len + 1)):
        for i in range(text_len - n + 1):
            out.append(text[i : i + n])
    return out


def _char_wb_word(word: str, min_n: int, max_n: int) -> list[str]:
    """scikit-learn's `_char_wb_ngrams` for one word: padded with a space on each side;
    a word shorter than n gives its padded self once and stops the larger n."""
    w = " " + word + " "
    w_len = len(w)
    out = []
    for n in range(min_n, max_n + 1):
        offset = 0
        out.append(w[offset : offset + n])
        while offset + n < w_len:
            offset += 1
            out.append(w[offset : offset + n])
        if offset == 0:
            break
    return out


# --------------------------------------------------------------------------- features


@dataclass(frozen=True)
class SparseRows:
    """A CSR matrix as plain arrays (column indices sorted within each row)."""

    data: np.ndarray
    indices: np.ndarray
    indptr: np.ndarray
    shape: tuple[int, int]


class _RowOrder:
    """Adds each row's values one at a time, as a plain loop would, in vectorised steps.

    scikit-learn's l2 norm and scipy's CSR product add a row's terms in a loop, in column
    order. NumPy's reductions add in another order (pairwise, SIMD), which moves a float32
    result by a unit in the last place. Here rows are sorted by length and step k adds the
    k-th value of every row still that long: each row gets the very additions of the loop,
    so the sums are scikit-learn's to the last bit. `perm` lists value positions in that
    order (first values of all rows, then second values, ...), so a step reads a slice.
    """

    def __init__(self, indptr: np.ndarray) -> None:
        lengths = np.diff(indptr)
        self.rows = np.argsort(-lengths, kind="stable")
        by_length = lengths[self.rows]
        longest = int(by_length[0]) if len(by_length) else 0
        # active[k]: how many rows have more than k values (a prefix of the sorted rows)
        self.active = np.searchsorted(-by_length, -np.arange(longest), side="left").tolist()
        starts = indptr[:-1][self.rows]
        self.perm = np.empty(int(indptr[-1]), dtype=np.int64)
        at = 0
        for k, m in enumerate(self.active):
            np.add(starts[:m], k, out=self.perm[at : at + m])
            at += m

    def add(self, acc: np.ndarray, ordered: np.ndarray) -> None:
        """acc[i] += row i's values, one at a time; `ordered` is `values[self.perm]`."""
        sums = acc[self.rows]
        at = 0
        for m in self.active:
            sums[:m] += ordered[at : at + m]
            at += m
        acc[self.rows] = sums

    def add_product(
        self, acc: np.ndarray, data: np.ndarray, cols: np.ndarray, weights: np.ndarray
    ) -> None:
        """acc += X @ weights, X's row i holding `data` at `cols` (both in `perm` order).

        Products are formed a few thousand values at a time, which bounds the temporary.
        """
        sums = acc[self.rows]
        at, step, steps = 0, 0, len(self.active)
        while step < steps:
            first, size = step, 0
            while step < steps and (step == first or size + self.active[step] <= _CHUNK_VALUES):
                size += self.active[step]
                step += 1
            product = np.take(weights, cols[at : at + size], axis=0)
            product *= data[at : at + size, None]
            done = 0
            for m in self.active[first:step]:
                sums[:m] += product[done : done + m]
                done += m
            at += size
        acc[self.rows] = sums


def _sums_of_squares(values: np.ndarray, indptr: np.ndarray) -> np.ndarray:
    """Each row's sum of squares as scikit-learn's l2 norm computes it.

    scikit-learn squares in the data's dtype and adds the squares in float64 in a loop.
    For float32 TF-IDF values that are all at least 1 (tf >= 1 and idf >= 1 always make
    them so) every square is a multiple of 2**-23, so float64 holds every partial sum
    below 2**30 exactly: any order of additions gives the loop's result, and
    `np.add.reduceat` may be used. Otherwise the loop's order is kept (`_RowOrder`).
    """
    n_rows = len(indptr) - 1
    squares = (values * values).astype(np.float64)
    sums = np.zeros(n_rows, dtype=np.float64)
    filled = np.flatnonzero(np.diff(indptr))
    if len(filled) == 0:
        return sums
    if values.dtype == np.float32 and values.min() >= 1.0:
        sums[filled] = np.add.reduceat(squares, indptr[filled])
        if sums.max() < 2.0**30:
            return sums
        sums[:] = 0.0
    order = _RowOrder(indptr)
    order.add(sums, squares[order.perm])
    return sums


class _WordIds(dict):
    """word -> the vocabulary ids of its n-grams, computed on first use."""

    def __init__(self, compute: Callable[[str], np.ndarray]) -> None:
        super().__init__()
        self.compute = compute

    def __missing__(self, word: str) -> np.ndarray:
        ids = self[word] = self.compute(word)
        return ids


@dataclass(eq=False)
class TextFeatures:
    """One fitted `TfidfVectorizer` as plain data, and its `transform` in NumPy."""

    name: str
    analyzer: str
    ngram_range: tuple[int, int]
    lowercase: bool
    strip_accents: str | None
    token_pattern: str | None
    binary: bool
    sublinear_tf: bool
    norm: str | None
    dtype: str
    terms: list[str]
    idf: np.ndarray | None
    vocabulary: dict[str, int] = field(init=False, repr=False)
    cache: _WordIds = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.analyzer not in ANALYZERS:
            raise ValueError(f"analyzer {self.analyzer!r} is not one of {ANALYZERS}")
        if self.strip_accents not in STRIP_ACCENTS or self.norm not in NORMS:
            raise ValueError(f"unsupported strip_accents/norm: {self.strip_accents}/{self.norm}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype {self.dtype!r} is not one of {DTYPES}")
        if self.idf is not None and self.idf.shape != (len(self.terms),):
            raise ValueError(f"{self.name}: {self.idf.shape} idf weights, {len(self.terms)} terms")
        self.ngram_range = (int(self.ngram_range[0]), int(self.ngram_range[1]))
        self.vocabulary = dict(zip(self.terms, range(len(self.terms)), strict=True))
        if len(self.vocabulary) != len(self.terms):
            raise ValueError(f"{self.name}: the vocabulary repeats a term")
        self._accents = _ACCENT_FUNCTIONS.get(self.strip_accents or "")
        self._tokenize = re.compile(self.token_pattern or "").findall
        self._np_dtype = np.dtype(self.dtype)
        self.cache = _WordIds(self._word_ids)

    @property
    def size(self) -> int:
        return len(self.terms)

    def params(self) -> dict:
        """The JSON-ready parameters (everything but the terms and idf arrays)."""
        return {
            "name": self.name,
            "analyzer": self.analyzer,
            "ngram_range": list(self.ngram_range),
            "lowercase": self.lowercase,
            "strip_accents": self.strip_accents,
            "token_pattern": self.token_pattern,
            "binary": self.binary,
            "sublinear_tf": self.sublinear_tf,
            "norm": self.norm,
            "dtype": self.dtype,
            "use_idf": self.idf is not None,
            "size": self.size,
        }

    def preprocess(self, doc: str) -> str:
        """scikit-learn's `_preprocess`: lowercase, then strip accents."""
        if self.lowercase:
            doc = doc.lower()
        if self._accents is not None:
            doc = self._accents(doc)
        return doc

    def analyze(self, doc: str) -> list[str]:
        """The n-grams scikit-learn's `build_analyzer()` gives for one document."""
        doc = self.preprocess(doc)
        lo, hi = self.ngram_range
        if self.analyzer == "word":
            return _word_ngrams(self._tokenize(doc), lo, hi)
        if self.analyzer == "char":
            return _char_ngrams(doc, lo, hi)
        return [g for w in _WHITE_SPACES.sub(" ", doc).split() for g in _char_wb_word(w, lo, hi)]

    def _word_ids(self, word: str) -> np.ndarray:
        """Vocabulary ids of one (preprocessed) word's `char_wb` n-grams, in order."""
        vocab = self.vocabulary
        lo, hi = self.ngram_range
        return np.array(
            [vocab[g] for g in _char_wb_word(word, lo, hi) if g in vocab], dtype=np.int32
        )

    def _ids(self, docs: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Vocabulary ids of all n-grams of all docs, and where each doc's ids end.

        For `char_wb` n-grams never cross white space, so a document's n-grams are its
        words' n-grams in order: each distinct (preprocessed) word is analysed once and its
        ids cached. Words repeat, so most of a new sentence is already done. (`analyze`
        first turns runs of white space into one space, which cannot change `split()`.)
        """
        ends: list[int] = []
        if self.analyzer == "char_wb":
            if len(self.cache) > _WORD_CACHE_LIMIT:
                self.cache.clear()  # a long-running stream must not grow without bound
            lookup = self.cache.__getitem__
            words: list[np.ndarray] = []
            for doc in docs:
                words += map(lookup, self.preprocess(doc).split())
                ends.append(len(words))
            if not words:
                return np.zeros(0, np.int32), np.zeros(len(docs), np.int64)
            sizes = np.fromiter(map(len, words), dtype=np.int64, count=len(words))
            done = np.concatenate([[0], np.cumsum(sizes)])
            return np.concatenate(words), done[ends]
        get, missing = self.vocabulary.get, repeat(-1)
        lo, hi = self.ngram_range
        flat: list[int] = []
        for doc in docs:
            if self.analyzer == "word":  # `analyze`, without building the n-gram list
                for grams in _word_ngram_runs(self._tokenize(self.preprocess(doc)), lo, hi):
                    flat += map(get, grams, missing)
            else:
                flat += map(get, self.analyze(doc), missing)
            ends.append(len(flat))
        ids = np.array(flat, dtype=np.int64)
        known = ids >= 0
        done = np.concatenate([[0], np.cumsum(known)])
        return ids[known].astype(np.int32), done[ends]

    def transform(self, docs: Sequence[str]) -> SparseRows:
        """`TfidfVectorizer.transform(docs)`, value for value."""
        n_docs, n_features = len(docs), self.size
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
        indices = (keys % n_features).astype(np.int32)
        dtype = self._np_dtype
        values = np.ones(len(keys), dtype) if self.binary else counts.astype(dtype)
        if self.sublinear_tf:
            np.log(values, out=values)
            values += dtype.type(1.0)
        if self.idf is not None:
            values *= self.idf[indices]
        indptr = indptr.astype(np.int64)
        if self.norm == "l2":
            norms = np.sqrt(_sums_of_squares(values, indptr))
            norms[norms == 0.0] = 1.0  # scikit-learn leaves an all-zero row as it is
            values = (values / np.repeat(norms, np.diff(indptr))).astype(dtype)
        return SparseRows(values, indices, indptr, (n_docs, n_features))


# --------------------------------------------------------------------------- the model


@dataclass(eq=False)
class TfidfScorer:
    """Features, then the linear heads: the `model.predictor.Backend` of `tfidf` models.

    Each head's `weights` is (features, outputs), the transposed `coef_` in its own dtype,
    so one gather per non-zero feeds all its outputs. The decision is computed in the
    dtype scipy would use for the fitted `X @ coef_.T` (float64 for liblinear's category
    models; float32 for the lbfgs stance model on float32 features, summed in scipy's order
    since float32 sums depend on it), then `predict_proba` as scikit-learn does it.
    A category constant in training (scikit-learn's `_ConstantPredictor`) scores its
    constant. A binary stance model (one stance absent from train) has one row and scores
    [1 - p, p]; stance columns are placed by `stance_classes` (absent stances score 0).
    """

    parts: list[TextFeatures]
    category_weights: np.ndarray  # (features, categories)
    category_intercept: np.ndarray  # (categories,)
    category_constant: list[float | None]  # per category: None, or its constant score
    stance_weights: np.ndarray  # (features, stance rows)
    stance_intercept: np.ndarray  # (stance rows,)
    stance_classes: list[int]  # schema stance index of each class, in `classes_` order
    offsets: list[int] = field(init=False, repr=False)  # first column of each part

    def __post_init__(self) -> None:
        n_features = sum(p.size for p in self.parts)
        n_cat, n_st = len(CATEGORIES), self.stance_weights.shape[1]
        if (
            self.category_weights.shape != (n_features, n_cat)
            or self.category_intercept.shape != (n_cat,)
            or len(self.category_constant) != n_cat
        ):
            raise ValueError(
                f"category weights of shape {self.category_weights.shape} do not fit "
                f"{n_features} features and {n_cat} categories"
            )
        if self.stance_weights.shape[0] != n_features or self.stance_intercept.shape != (n_st,):
            raise ValueError(f"stance weights of shape {self.stance_weights.shape} do not fit")
        classes = self.stance_classes
        if sorted(set(classes)) != list(classes) or not set(classes) <= set(range(len(STANCES))):
            raise ValueError(f"stance classes {classes} are not sorted schema stance indices")
        if not (n_st == len(classes) >= 3 or (n_st == 1 and len(classes) == 2)):
            raise ValueError(f"{n_st} stance weight rows for {len(classes)} stance classes")
        self.offsets = np.cumsum([0] + [p.size for p in self.parts])[:-1].tolist()

    @property
    def n_features(self) -> int:
        return self.category_weights.shape[0]

    def features(self, sentences: Sequence[str]) -> SparseRows:
        """The matrix scikit-learn's `FeatureUnion.transform` gives (parts side by side).

        Scoring never builds it (each part meets the heads on its own); it is here for
        checks and inspection.
        """
        blocks = [p.transform(sentences) for p in self.parts]
        n = len(sentences)
        lengths = sum(np.diff(b.indptr) for b in blocks)
        indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        rows = np.concatenate([np.repeat(np.arange(n), np.diff(b.indptr)) for b in blocks])
        order = np.argsort(rows, kind="stable")  # row by row, parts in order within a row
        data = np.concatenate([b.data for b in blocks])[order]
        indices = np.concatenate(
            [b.indices.astype(np.int64) + off for b, off in zip(blocks, self.offsets, strict=True)]
        )[order]
        return SparseRows(data, indices, indptr, (n, self.n_features))

    def _decisions(self, sentences: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """`X @ coef_.T + intercept_` of both heads, in the dtype and order scipy uses.

        scipy casts X and the weights to a common dtype and adds a row's products in a
        loop, starting from 0: float64 for the category models, float32 for the stance
        model when features and coefficients are float32 (there the order shows).
        """
        heads = [
            (self.category_weights, self.category_intercept),
            (self.stance_weights, self.stance_intercept),
        ]
        xs = [p.transform(sentences) for p in self.parts]
        out = [
            np.zeros((len(sentences), w.shape[1]), np.result_type(w, *[x.data for x in xs]))
            for w, _ in heads
        ]
        for x, offset in zip(xs, self.offsets, strict=True):
            order = _RowOrder(x.indptr)
            data, cols = x.data[order.perm], x.indices[order.perm] + offset
            for (weights, _), acc in zip(heads, out, strict=True):
                order.add_product(acc, data.astype(acc.dtype, copy=False), cols, weights)
        return tuple(acc + b for acc, (_, b) in zip(out, heads, strict=True))

    def scores(self, sentences: Sequence[str]) -> Scores:
        z, st = self._decisions(sentences)
        categories = np.asarray(1.0 / (1.0 + np.exp(-z)), dtype=np.float64)
        for j, constant in enumerate(self.category_constant):
            if constant is not None:
                categories[:, j] = constant
        if st.shape[1] == 1:  # scikit-learn's binary case: scipy's expit, then [1 - p, p]
            st = st[:, 0]
            one = st.dtype.type(1)
            p = one / (one + np.exp(-st.astype(np.float64)).astype(st.dtype))
            st = np.stack([one - p, p], axis=1)
        else:  # scikit-learn's `softmax`, step by step in the decision's dtype
            st -= st.max(axis=1).reshape(-1, 1)
            np.exp(st, out=st)
            st /= st.sum(axis=1).reshape(-1, 1)
        stance = np.zeros((len(sentences), len(STANCES)))
        stance[:, self.stance_classes] = st
        return Scores(categories=categories, stance=stance)


# --------------------------------------------------------------------------- export


@dataclass(frozen=True)
class Exported:
    """A fitted model as JSON-ready config plus named arrays: exactly what is saved."""

    config: dict
    arrays: dict[str, np.ndarray]


def _terms_arrays(name: str, terms: list[str]) -> dict[str, np.ndarray]:
    """The vocabulary as UTF-8 bytes: newline-joined, the format's usual layout.

    A term can hold a newline (a `char` analyzer over a sentence that spans a line break);
    then the terms are stored back to back with their end offsets in `<name>.term_ends`,
    so ordinary vocabularies keep the byte layout (and the model versions) they had.
    """
    if not any("\n" in t for t in terms):
        blob = "\n".join(terms).encode("utf-8", "surrogatepass")
        return {f"{name}.terms": np.frombuffer(blob, dtype=np.uint8)}
    encoded = [t.encode("utf-8", "surrogatepass") for t in terms]
    return {
        f"{name}.terms": np.frombuffer(b"".join(encoded), dtype=np.uint8),
        f"{name}.term_ends": np.cumsum([len(e) for e in encoded], dtype=np.int64),
    }


def _terms(arrays: dict[str, np.ndarray], name: str, size: int) -> list[str]:
    raw = arrays[f"{name}.terms"].tobytes()
    ends = arrays.get(f"{name}.term_ends")
    if ends is not None:
        bounds = [0, *ends.tolist()]
        terms = [raw[a:b].decode("utf-8", "surrogatepass") for a, b in pairwise(bounds)]
    elif size == 0:
        return []
    else:
        terms = raw.decode("utf-8", "surrogatepass").split("\n")
    if len(terms) != size:
        raise ValueError(f"{len(terms)} terms stored, {size} expected")
    return terms


def _export_vectorizer(name: str, vec) -> tuple[dict, dict[str, np.ndarray]]:
    """Parameters and arrays of a fitted `TfidfVectorizer`; unsupported settings refused."""
    problems = []
    if type(vec).__name__ != "TfidfVectorizer":
        problems.append(f"is a {type(vec).__name__}, not a TfidfVectorizer")
    if getattr(vec, "input", "content") != "content":
        problems.append(f"input={vec.input!r}")
    for attr in ("preprocessor", "tokenizer", "stop_words"):
        if getattr(vec, attr, None) is not None:
            problems.append(f"{attr} is set")
    if vec.analyzer not in ANALYZERS:
        problems.append(f"analyzer={vec.analyzer!r}")
    if vec.strip_accents not in STRIP_ACCENTS:
        problems.append(f"strip_accents={vec.strip_accents!r}")
    if vec.norm not in NORMS:
        problems.append(f"norm={vec.norm!r}")
    dtype = np.dtype(vec.dtype).name
    if dtype not in DTYPES:
        problems.append(f"dtype={dtype}")
    if problems:
        raise ValueError(f"cannot export feature part {name!r}: {'; '.join(problems)}")
    terms = [""] * len(vec.vocabulary_)
    for term, i in vec.vocabulary_.items():
        terms[i] = term
    part = TextFeatures(
        name=name,
        analyzer=vec.analyzer,
        ngram_range=tuple(vec.ngram_range),
        lowercase=bool(vec.lowercase),
        strip_accents=vec.strip_accents,
        token_pattern=vec.token_pattern if vec.analyzer == "word" else None,
        binary=bool(vec.binary),
        sublinear_tf=bool(vec.sublinear_tf),
        norm=vec.norm,
        dtype=dtype,
        terms=terms,
        idf=np.asarray(vec.idf_) if vec.use_idf else None,
    )
    arrays = _terms_arrays(name, terms)
    if part.idf is not None:
        arrays[f"{name}.idf"] = np.ascontiguousarray(part.idf)
    return part.params(), arrays


def export_sklearn(features, categories, stance) -> Exported:
    """Plain data of a fitted FeatureUnion of TfidfVectorizers, a OneVsRestClassifier of
    binary LogisticRegressions (one per category) and a LogisticRegression for stance.

    Duck-typed on the fitted attributes, so this module never imports scikit-learn.
    """
    if getattr(features, "transformer_weights", None):
        raise ValueError("cannot export a FeatureUnion with transformer_weights")
    parts, arrays = [], {}
    for name, vec in features.transformer_list:
        params, part_arrays = _export_vectorizer(name, vec)
        parts.append(params)
        arrays |= part_arrays
    n_features = sum(p["size"] for p in parts)
    if not getattr(categories, "multilabel_", False):
        raise ValueError("the category classifier must be a multi-label OneVsRestClassifier")
    if len(categories.estimators_) != len(CATEGORIES):
        raise ValueError(
            f"{len(categories.estimators_)} category estimators, not {len(CATEGORIES)}"
        )
    fitted = [e for e in categories.estimators_ if hasattr(e, "coef_")]
    dtype = np.result_type(*[e.coef_ for e in fitted]) if fitted else np.float64
    cat_w = np.zeros((n_features, len(CATEGORIES)), dtype=dtype)
    cat_b = np.zeros(len(CATEGORIES), dtype=dtype)
    constant: list[float | None] = []
    for j, est in enumerate(categories.estimators_):
        if hasattr(est, "coef_"):
            if list(est.classes_) != [0, 1] or est.coef_.shape != (1, n_features):
                raise ValueError(f"category {CATEGORIES[j]}: not a binary model on the features")
            cat_w[:, j] = est.coef_[0]
            cat_b[j] = est.intercept_[0]
            constant.append(None)
        else:  # `_ConstantPredictor`: one class in training, its probability is that class
            constant.append(float(np.asarray(est.y_).ravel()[0]))
    classes = [int(c) for c in stance.classes_]
    if stance.coef_.shape[1] != n_features:
        raise ValueError(f"the stance model has {stance.coef_.shape[1]} features, not {n_features}")
    arrays |= {
        "categories.weights": cat_w,
        "categories.intercept": cat_b,
        "stance.weights": np.asarray(stance.coef_).T,
        "stance.intercept": np.asarray(stance.intercept_),
    }
    config = {
        "format": FORMAT,
        "features": parts,
        "categories": {"names": list(CATEGORIES), "constant": constant},
        "stance": {"classes": classes, "names": [STANCES[c] for c in classes]},
    }
    return Exported(config, {k: np.ascontiguousarray(v) for k, v in arrays.items()})


def scorer(exported: Exported) -> TfidfScorer:
    """The scorer of exported config + arrays (what `load_backend` builds from the files)."""
    config, arrays = exported.config, exported.arrays
    if config.get("format") != FORMAT:
        raise ValueError(f"TF-IDF format {config.get('format')!r}, expected {FORMAT!r}")
    if config["categories"]["names"] != list(CATEGORIES):
        raise ValueError("the category heads were trained for another label order")
    parts = []
    for p in config["features"]:
        name = p["name"]
        parts.append(
            TextFeatures(
                name=name,
                analyzer=p["analyzer"],
                ngram_range=tuple(p["ngram_range"]),
                lowercase=bool(p["lowercase"]),
                strip_accents=p["strip_accents"],
                token_pattern=p["token_pattern"],
                binary=bool(p["binary"]),
                sublinear_tf=bool(p["sublinear_tf"]),
                norm=p["norm"],
                dtype=p["dtype"],
                terms=_terms(arrays, name, int(p["size"])),
                idf=arrays[f"{name}.idf"] if p["use_idf"] else None,
            )
        )
    return TfidfScorer(
        parts=parts,
        category_weights=arrays["categories.weights"],
        category_intercept=arrays["categories.intercept"],
        category_constant=list(config["categories"]["constant"]),
        stance_weights=arrays["stance.weights"],
        stance_intercept=arrays["stance.intercept"],
        stance_classes=[int(c) for c in config["stance"]["classes"]],
    )


# --------------------------------------------------------------------------- files


def save_model(exported: Exported, folder: Path) -> None:
    """Write the two model files into an artifact folder (called inside `save_artifact`)."""
    from safetensors.numpy import save_file

    folder = Path(folder)
    (folder / CONFIG_FILE).write_text(json.dumps(exported.config, indent=1, ensure_ascii=False))
    save_file(exported.arrays, str(folder / ARRAYS_FILE))


def read_model(folder: Path) -> Exported:
    """The config and arrays of a (manifest-verified) folder; an old pickle is refused."""
    from safetensors.numpy import load_file

    folder = Path(folder)
    if not (folder / ARRAYS_FILE).is_file():
        if (folder / LEGACY_FILE).is_file():
            raise ArtifactError(
                f"{folder}: an old TF-IDF model saved as a joblib pickle ({LEGACY_FILE}); "
                "pickles are never loaded, because unpickling runs code. Retrain it "
                f"(python -m training.train_tfidf --out {folder}) to get the "
                f"{ARRAYS_FILE} + {CONFIG_FILE} format"
            )
        raise ArtifactError(f"{folder}: no {ARRAYS_FILE}; not a TF-IDF model folder")
    try:
        config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
        arrays = load_file(str(folder / ARRAYS_FILE))
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{folder}: unreadable TF-IDF model files ({exc})") from exc
    return Exported(config, arrays)


def load_backend(folder: Path, meta: dict) -> TfidfScorer:
    """Registry entry point; the manifest has already been verified by `read_meta`."""
    try:
        return scorer(read_model(folder))
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"{folder}: TF-IDF model files do not fit together ({exc})") from exc
