"""From raw input to sentence records and article summaries, in batches, without printing.

`predict.py` is a thin CLI over this module, so any other tool (a monitoring service, a
notebook, the evaluation harness) gets the same parsing rules, the same sentence cuts and
the same record layout by importing it. The pieces:

- `decode_input` / `parse_input` / `parse_jsonl_line`: bytes or text -> `Document`s, with an
  `InputError` that says where the input is wrong (binary, invalid UTF-8, an over-long line,
  a line that is not a JSON object or lacks `text`, empty input);
- `Engine`: splits documents with `model.sentences.split_sentences` (the dataset's own rule)
  and scores their sentences together in batches, yielding one `DocumentResult` per
  document in input order as soon as its batch is done;
- `sentence_records` / `article_summary`: the stable JSON-ready dicts (see `predict.py`).

Speed: the TF-IDF backend's fast featuriser lives in `model.tfidf` (so every tool gets
it); here, sentences of many documents share one backend call.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from model.predictor import Predictor, Scores
from model.schema import CATEGORIES, STANCES
from model.sentences import Sentence, split_sentences

DEFAULT_MAX_LINE_BYTES = 1_000_000
DEFAULT_BATCH_SENTENCES = 1024
INPUT_FORMATS = ("auto", "text", "jsonl")
_KONTRA = STANCES.index("kontra")
T = TypeVar("T")
# Control characters that do not occur in text; a share above this in the first block of
# an input means it is binary (a NUL byte anywhere means so at once).
_CONTROL = bytes(c for c in range(32) if c not in b"\t\n\r\f\v") + b"\x7f"
_BINARY_CONTROL_SHARE = 0.10


class InputError(ValueError):
    """Input that cannot be read as text or JSON Lines; the message says where."""


class ModelError(RuntimeError):
    """A model that failed while scoring (loading errors are `model.artifact.ArtifactError`)."""


@dataclass(frozen=True)
class Document:
    """One unit of input: an article or a single sentence, with the id records carry."""

    id: str | int
    text: str
    line: int | None = None  # 1-based line in a JSON Lines source; None for plain text


@dataclass(frozen=True)
class DocumentResult:
    """A document's sentences with their raw scores and the predictor's decisions."""

    document: Document
    sentences: list[Sentence]
    category_scores: np.ndarray  # (k, len(CATEGORIES))
    chosen: np.ndarray  # (k, len(CATEGORIES)) bool: score >= the category's threshold
    stance_probs: np.ndarray  # (k, len(STANCES))
    stance: np.ndarray  # (k,) index into STANCES


# --------------------------------------------------------------------------- input


def check_binary(data: bytes, source: str) -> None:
    """Refuse binary data before decoding, so the message says "binary", not "bad UTF-8"."""
    nul = data.find(b"\0")
    if nul >= 0:
        raise InputError(f"{source}: binary data, not text (NUL byte at byte {nul})")
    head = data[:4096]
    controls = len(head) - len(head.translate(None, _CONTROL))
    if controls > _BINARY_CONTROL_SHARE * len(head):
        raise InputError(f"{source}: binary data, not text (control bytes in the first block)")


def decode_input(data: bytes, source: str, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> str:
    """Bytes of a whole input -> text, refusing binary, invalid UTF-8 and over-long lines.

    A leading UTF-8 byte-order mark is dropped; offsets in the output count from after it.
    """
    check_binary(data, source)
    check_line_lengths(data, source, max_line_bytes)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InputError(
            f"{source}: not valid UTF-8 (byte {exc.start}, line {line}: "
            f"{data[exc.start : exc.start + 4]!r}); convert the input to UTF-8"
        ) from None
    return text.removeprefix("\ufeff")


def check_line_lengths(data: bytes, source: str, max_line_bytes: int) -> None:
    """Refuse any line longer than `max_line_bytes` (a guard against runaway inputs)."""
    start = 0
    lineno = 1
    size = len(data)
    while start < size:
        end = data.find(b"\n", start)
        if end < 0:
            end = size
        if end - start > max_line_bytes:
            raise InputError(
                f"{source}: line {lineno} is {end - start} bytes, over the limit of "
                f"{max_line_bytes} (raise it with --max-line-bytes)"
            )
        start = end + 1
        lineno += 1


def check_text(text: str, source: str, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> str:
    """Validate text that arrived as `str` (a command-line argument) like decoded bytes."""
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(f"{source}: not valid UTF-8") from None
    check_binary(data, source)
    check_line_lengths(data, source, max_line_bytes)
    return text


def detect_format(text: str) -> str:
    """`jsonl` when the first non-empty line starts with `{`, else `text`.

    Deciding on the first line (rather than "every line parses") means a JSON Lines file
    with one broken line is reported as broken, with its line number, instead of being
    silently scored as one prose article made of JSON.
    """
    for line in text.splitlines():
        stripped = line.strip()
        if stripped:
            return "jsonl" if stripped.startswith("{") else "text"
    return "text"


def parse_jsonl_line(line: str, lineno: int, source: str) -> Document:
    """One JSON Lines record `{"id": ..., "text": ...}` -> Document (id optional)."""
    try:
        obj = json.loads(line)
    except ValueError as exc:
        raise InputError(f"{source}: line {lineno}: not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise InputError(
            f"{source}: line {lineno}: expected a JSON object, got {type(obj).__name__}"
        )
    if "text" not in obj:
        raise InputError(f'{source}: line {lineno}: JSON object has no "text" field')
    text = obj["text"]
    if not isinstance(text, str):
        raise InputError(
            f'{source}: line {lineno}: "text" must be a string, got {type(text).__name__}'
        )
    doc_id = obj.get("id")
    if doc_id is None:
        doc_id = f"{source}:{lineno}"
    elif isinstance(doc_id, bool) or not isinstance(doc_id, str | int):
        raise InputError(
            f'{source}: line {lineno}: "id" must be a string or an integer, '
            f"got {type(doc_id).__name__}"
        )
    return Document(id=doc_id, text=text, line=lineno)


def parse_input(text: str, source: str, input_format: str = "auto") -> list[Document]:
    """A whole input (argument, file or stdin) -> its documents.

    Plain text is one article whose id is `source`; JSON Lines gives one document per
    non-empty line. Raises InputError for empty input or any bad line.
    """
    if input_format not in INPUT_FORMATS:
        raise ValueError(f"input_format must be one of {INPUT_FORMATS}, not {input_format!r}")
    if not text.strip():
        raise InputError(f"{source}: empty input")
    if input_format == "auto":
        input_format = detect_format(text)
    if input_format == "text":
        return [Document(id=source, text=text)]
    docs = []
    for lineno, line in enumerate(text.split("\n"), 1):
        if line.strip():
            docs.append(parse_jsonl_line(line, lineno, source))
    return docs


# --------------------------------------------------------------------------- prediction


def model_info(predictor: Predictor) -> dict:
    """The `model` field of every record: backend name, version and encoder when known."""
    info: dict = {"name": predictor.name, "version": predictor.version}
    if "encoder" in predictor.meta:
        info["encoder"] = predictor.meta["encoder"]
    return info


class Engine:
    """Scores documents' sentences in batches and hands results back per document.

    Sentences of many small documents share one backend call (the per-call overhead of a
    transformer or of scikit-learn dominates for one short sentence), and a huge document is
    scored in slices of `batch_sentences` so memory stays bounded.
    """

    def __init__(
        self, predictor: Predictor, batch_sentences: int = DEFAULT_BATCH_SENTENCES
    ) -> None:
        if batch_sentences < 1:
            raise ValueError("batch_sentences must be at least 1")
        self.predictor = predictor
        self.batch_sentences = batch_sentences
        self.model = model_info(predictor)

    def _scores(self, texts: list[str]) -> Scores:
        parts = []
        try:
            for i in range(0, len(texts), self.batch_sentences):
                parts.append(self.predictor.scores(texts[i : i + self.batch_sentences]))
        except Exception as exc:
            raise ModelError(f"the model failed while scoring: {exc!r}") from exc
        if len(parts) == 1:
            return parts[0]
        if not parts:
            return self.predictor.scores([])
        return Scores(
            np.concatenate([p.categories for p in parts]),
            np.concatenate([p.stance for p in parts]),
        )

    def score_batch(self, documents: Sequence[Document]) -> list[DocumentResult]:
        """Score all sentences of `documents` together; one result per document, in order."""
        split = [split_sentences(doc.text) for doc in documents]
        texts = [s.text for sentences in split for s in sentences]
        scores = self._scores(texts)
        chosen, stance = self.predictor.decide(scores)
        out = []
        at = 0
        for doc, sentences in zip(documents, split, strict=True):
            end = at + len(sentences)
            out.append(
                DocumentResult(
                    document=doc,
                    sentences=sentences,
                    category_scores=scores.categories[at:end],
                    chosen=chosen[at:end],
                    stance_probs=scores.stance[at:end],
                    stance=stance[at:end],
                )
            )
            at = end
        return out

    def map_chunks(
        self,
        documents: Sequence[Document],
        render: Callable[[list[DocumentResult]], T],
        jobs: int = 1,
        chunk_docs: int = 2048,
    ) -> Iterator[T]:
        """`render(results)` for consecutive chunks of documents, in input order.

        With `jobs > 1` the chunks are scored and rendered in forked worker processes, so
        splitting, scoring and serialising use every core while this process only writes.
        Forking is offered for torch-free processes only (torch's threads do not survive a
        fork, and a transformer already spreads one batch over all cores); elsewhere, or
        where `fork` does not exist, it runs in this process.
        """
        chunks = [documents[i : i + chunk_docs] for i in range(0, len(documents), chunk_docs)]
        if jobs <= 1 or len(chunks) <= 1 or not parallel_safe():
            for chunk in chunks:
                yield render(list(self.run(chunk)))
            return
        import multiprocessing

        global _WORKER
        _WORKER = (self, render)
        try:
            with multiprocessing.get_context("fork").Pool(min(jobs, len(chunks))) as pool:
                yield from pool.imap(_work, chunks)
        finally:
            _WORKER = None

    def run(self, documents: Iterable[Document]) -> Iterator[DocumentResult]:
        """Yield results in input order, scoring whenever a batch's worth of sentences waits."""
        pending: list[Document] = []
        waiting = 0
        for doc in documents:
            pending.append(doc)
            # Periods and newlines: a cheap estimate of the sentences to come.
            waiting += max(1, doc.text.count(".") + doc.text.count("\n"))
            if waiting >= self.batch_sentences:
                yield from self.score_batch(pending)
                pending, waiting = [], 0
        if pending:
            yield from self.score_batch(pending)


_WORKER: tuple[Engine, Callable] | None = None  # set in the parent, inherited by fork


def _work(chunk: Sequence[Document]):
    engine, render = _WORKER
    return render(list(engine.run(chunk)))


def parallel_safe() -> bool:
    """True where `Engine.map_chunks` may fork: POSIX `fork` and no torch in the process."""
    import multiprocessing

    return "fork" in multiprocessing.get_all_start_methods() and "torch" not in sys.modules


def sentence_records(result: DocumentResult, model: dict) -> list[dict]:
    """One record per sentence (the stable keys are documented in `predict.py`)."""
    doc = result.document
    out = []
    cat_rows = result.category_scores.tolist()
    stance_rows = result.stance_probs.tolist()
    chosen_rows = result.chosen.tolist()
    stance_idx = result.stance.tolist()
    for i, s in enumerate(result.sentences):
        out.append(
            {
                "type": "sentence",
                "id": doc.id,
                "sentence_index": i,
                "start": s.start,
                "end": s.end,
                "text": s.text,
                "categories": [c for c, on in zip(CATEGORIES, chosen_rows[i], strict=True) if on],
                "category_scores": dict(zip(CATEGORIES, cat_rows[i], strict=True)),
                "stance": STANCES[stance_idx[i]],
                "stance_probs": dict(zip(STANCES, stance_rows[i], strict=True)),
                "model": model,
            }
        )
    return out


def article_summary(result: DocumentResult, model: dict) -> dict:
    """One record per document: categories found, best evidence for each, and the flag.

    A category is found when any sentence scores at or above its threshold (the same
    decision as in the sentence records); its evidence is the highest-scoring sentence.
    The document is flagged when a category is found or any sentence's stance is `kontra`.
    """
    found = result.chosen.any(axis=0) if len(result.sentences) else np.zeros(len(CATEGORIES))
    evidence = {}
    for j, name in enumerate(CATEGORIES):
        if not found[j]:
            continue
        i = int(result.category_scores[:, j].argmax())
        s = result.sentences[i]
        evidence[name] = {
            "sentence_index": i,
            "start": s.start,
            "end": s.end,
            "score": float(result.category_scores[i, j]),
            "text": s.text,
        }
    kontra = [int(i) for i in np.flatnonzero(result.stance == _KONTRA)]
    counts = np.bincount(result.stance, minlength=len(STANCES)).tolist()
    return {
        "type": "article",
        "id": result.document.id,
        "line": result.document.line,
        "sentences": len(result.sentences),
        "categories": list(evidence),
        "evidence": evidence,
        "stance_counts": dict(zip(STANCES, counts, strict=True)),
        "kontra_sentences": kontra,
        "flag": bool(evidence) or bool(kontra),
        "model": model,
    }


def error_record(line: int | None, message: str, doc_id: str | int | None = None) -> dict:
    """What the streaming mode answers for a line it cannot score."""
    return {"type": "error", "line": line, "id": doc_id, "error": message}
