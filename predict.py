"""Tag sentences of Indonesian news with ASN-neutrality categories and stance.

    python predict.py [TEXT] [--file PATH ...] [--model NAME_OR_FOLDER] [--article]
                      [--format jsonl|table] [--input-format auto|text|jsonl]
                      [--stream] [--batch-size N] [--max-line-bytes N] [--jobs N]
                      [--expect-version VERSION] [--expect-sha256 HEX]
                      [--runtime auto|onnx|torch]

Input (exactly one source): TEXT as an argument, one or more `--file`s, or stdin.
Plain text is one article, split into sentences with the dataset's own splitter and
boilerplate filter (`model.sentences`). JSON Lines has one `{"id": ..., "text": ...}` per
line, each text an article or a single sentence; `id` (string or integer) is optional.
`--input-format auto` (default) reads an input as JSON Lines when its first non-empty line
starts with `{`, else as plain text. Input must be UTF-8 (a leading BOM is dropped).

Model: `--model tfidf` (default; `$NETRALITAS_MODEL` overrides the default) or `indobert`
loads `models/<name>` in the repository, or `$NETRALITAS_MODELS/<name>`; any other value is
the path of a trained model folder. The folder's SHA-256 manifest is checked before loading.
A transformer folder runs on ONNX Runtime in int8 (no torch import) unless `--runtime torch`
(or `$NETRALITAS_RUNTIME=torch`) asks for the float32 PyTorch model; folders saved before
the ONNX export load with PyTorch.
Pins: `--expect-version VERSION` (meta.json's "version", also in every record's "model") and
`--expect-sha256 HEX` (the SHA-256 of the folder's manifest.json, which lists the SHA-256 of
every other file, so it pins them all: `sha256sum models/tfidf/manifest.json`) refuse any
other model with exit 4 before it is loaded. The manifest alone detects corruption; a pin
also detects a folder swapped together with a matching manifest. No backend unpickles.

Output: JSON Lines on stdout (UTF-8, compact), one complete line per record, in input
order (`--format table` prints readable columns for people instead; its layout is not an
interface). Keys below are stable; new keys may be added, none removed or renamed.

- sentence record, one per sentence:
  {"type": "sentence", "id", "sentence_index" (0-based within its input), "start", "end"
  (character offsets, Python `str` indices, into that input's text: `text[start:end]`),
  "text", "categories" (chosen: score >= the category's threshold, schema order),
  "category_scores" {category: float}, "stance" ("pro" | "kontra" | "netral"),
  "stance_probs" {stance: float}, "model" {"name", "version", "encoder" (transformer only)}}
- article record, with `--article` (always in `--stream`), after its sentences:
  {"type": "article", "id", "line" (JSON Lines line number, else null), "sentences" (count),
  "categories" (found in any sentence), "evidence" {category: {"sentence_index", "start",
  "end", "score", "text"}} (the highest-scoring sentence), "stance_counts" {stance: int},
  "kontra_sentences" [sentence_index], "flag" (a category found or a `kontra` sentence),
  "model"}
- error record, in `--stream` only, for a line that cannot be scored:
  {"type": "error", "line", "id" (null unless known), "error" (message)}

Ids: the JSON "id"; else `<source>:<line>` for a JSON Lines line; a plain-text input's id is
its source: "arg", "stdin" or the file path as given.

Speed: batch mode scores big inputs in `--jobs` forked worker processes (default: one per
CPU; TF-IDF only, output identical to one process) and a TF-IDF model is scored with NumPy
alone (`model.tfidf`: scikit-learn's numbers, without importing it).

Streaming (`--stream`): reads JSON Lines from stdin and answers each line as soon as it is
scored: its sentence records, then exactly one article record (or one error record), then a
flush, so a monitoring tool can keep one warm process and do request/response over a pipe.
Lines already waiting are scored together. Blank lines are skipped. A bad line (not UTF-8,
binary, not JSON, no "text", over `--max-line-bytes`) gets an error record on stdout and a
message on stderr, and the stream goes on.

Exit codes (shared by every command, `model/exitcodes.py`):
    0  ok (in --stream: end of input reached, even if some lines got error records)
    1  internal error (a bug; the message says so)
    2  usage: bad or conflicting options, no input given on a terminal
    3  input error: empty input, binary data, invalid UTF-8, a line over --max-line-bytes
       (default 1 MB), bad JSON or missing "text" in JSON Lines, unreadable file
    4  model error: unknown model name, missing, incomplete or tampered model folder,
       not the model pinned by --expect-version / --expect-sha256, an old pickled model,
       a backend that cannot be imported or fails while scoring
Input is fully read and checked before the model is loaded, so input errors print
nothing on stdout; on a later error, records already printed stay complete and valid.
If the reader closes stdout early (`| head`), the process ends quietly (SIGPIPE).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import select
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from model import exitcodes
from model.inference import (
    DEFAULT_BATCH_SENTENCES,
    DEFAULT_MAX_LINE_BYTES,
    INPUT_FORMATS,
    Document,
    DocumentResult,
    Engine,
    InputError,
    ModelError,
    article_summary,
    check_binary,
    check_text,
    decode_input,
    error_record,
    parse_input,
    parse_jsonl_line,
    sentence_records,
)

EXIT_OK, EXIT_INTERNAL, EXIT_USAGE, EXIT_INPUT, EXIT_MODEL = (
    exitcodes.OK,
    exitcodes.INTERNAL,
    exitcodes.USAGE,
    exitcodes.INPUT,
    exitcodes.MODEL,
)
PROG = "predict.py"
DEFAULT_MODEL = "tfidf"
STREAM_BATCH_LINES = 256


class Failure(Exception):
    """An error with its exit code; `main` prints the message and returns the code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(__doc__ or "").split("\n\n", 2)[-1],  # the contract, below the usage
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("text", nargs="?", help="text to tag (else --file or stdin)")
    parser.add_argument(
        "--file", "-f", action="append", default=[], type=Path, help="input file (repeatable)"
    )
    parser.add_argument(
        "--model",
        "-m",
        default=os.environ.get("NETRALITAS_MODEL", DEFAULT_MODEL),
        help="backend name (tfidf, indobert) or model folder (default: %(default)s)",
    )
    parser.add_argument("--input-format", choices=INPUT_FORMATS, default="auto")
    parser.add_argument("--format", choices=("jsonl", "table"), default="jsonl")
    parser.add_argument("--article", action="store_true", help="add one summary per input")
    parser.add_argument("--stream", action="store_true", help="answer JSON Lines from stdin")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SENTENCES)
    parser.add_argument("--max-line-bytes", type=int, default=DEFAULT_MAX_LINE_BYTES)
    parser.add_argument(
        "--jobs",
        type=int,
        default=0,
        help="worker processes for big inputs (default 0: one per CPU; TF-IDF only)",
    )
    parser.add_argument(
        "--runtime",
        choices=("auto", "onnx", "torch"),
        help="transformer runtime (default: $NETRALITAS_RUNTIME, else auto: ONNX if present)",
    )
    parser.add_argument(
        "--expect-version",
        metavar="VERSION",
        help="refuse (exit 4) a model whose meta.json version is not VERSION",
    )
    parser.add_argument(
        "--expect-sha256",
        metavar="HEX",
        help="refuse (exit 4) a model whose manifest.json has another SHA-256 (pins every file)",
    )
    return parser


# --------------------------------------------------------------------------- output


def json_line(record: dict) -> str:
    """One record as compact JSON with non-ASCII text kept readable."""
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


class Output:
    """Writes records as complete lines to a binary stream (JSON Lines or a table)."""

    FLUSH_BYTES = 1 << 16

    def __init__(self, stream: BinaryIO, fmt: str) -> None:
        self.stream = stream
        self.table = fmt == "table"
        self.header_done = False
        self.pending: list[str] = []
        self.pending_chars = 0

    def write(self, records: Iterable[dict]) -> None:
        """Queue records as complete lines (see `write_lines`)."""
        self.write_lines([self._row(r) if self.table else json_line(r) for r in records])

    def write_lines(self, lines: list[str]) -> None:
        """Queue complete lines; they go out in one write once 64 KB wait or on `flush`."""
        self.pending += lines
        self.pending_chars += sum(map(len, lines))
        if self.pending_chars >= self.FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.stream.write(("\n".join(self.pending) + "\n").encode("utf-8"))
            self.pending, self.pending_chars = [], 0
        self.stream.flush()

    def _row(self, r: dict) -> str:
        head = ""
        if not self.header_done:
            self.header_done = True
            head = f"{'ID':<24} {'#':>4} {'SPAN':<11} {'STANCE':<7} {'CATEGORIES':<34} TEXT\n"
        rid = str(r.get("id"))[-24:]
        if r["type"] == "sentence":
            cats = ",".join(r["categories"]) or "-"
            text = r["text"] if len(r["text"]) <= 80 else r["text"][:79] + "…"
            span = f"{r['start']}-{r['end']}"
            return (
                f"{head}{rid:<24} {r['sentence_index']:>4} {span:<11} {r['stance']:<7} "
                f"{cats:<34} {text}"
            )
        if r["type"] == "article":
            found = "; ".join(
                f"{c} (#{e['sentence_index']}, {e['score']:.2f})" for c, e in r["evidence"].items()
            )
            kontra = " ".join(f"#{i}" for i in r["kontra_sentences"]) or "-"
            return (
                f"{head}{rid:<24} ARTICLE {'FLAG' if r['flag'] else 'ok'}: "
                f"{r['sentences']} sentences; categories: {found or '-'}; kontra: {kontra}"
            )
        return f"{head}{rid:<24} ERROR line {r['line']}: {r['error']}"


def records_for(result: DocumentResult, model: dict, article: bool) -> list[dict]:
    records = sentence_records(result, model)
    if article:
        records.append(article_summary(result, model))
    return records


# --------------------------------------------------------------------------- model


def load_engine(
    name_or_path: str,
    batch_size: int,
    expect_version: str | None = None,
    expect_sha256: str | None = None,
) -> Engine:
    """Check the pins, load and verify a model; every failure is a model error (exit 4)."""
    from model.artifact import ArtifactError, check_pins
    from model.registry import load_predictor, resolve_model

    try:
        folder = resolve_model(name_or_path)
        check_pins(folder, version=expect_version, sha256=expect_sha256)
        return Engine(load_predictor(folder), batch_sentences=batch_size)
    except ArtifactError as exc:
        raise Failure(EXIT_MODEL, f"model error: {exc}") from exc
    except ImportError as exc:
        raise Failure(EXIT_MODEL, f"model error: cannot import the backend: {exc}") from exc
    except Exception as exc:
        raise Failure(EXIT_MODEL, f"model error: cannot load {name_or_path}: {exc!r}") from exc


# --------------------------------------------------------------------------- batch mode


def read_inputs(args: argparse.Namespace, stdin: BinaryIO) -> list[Document]:
    """Read and check every input before the model is loaded (input errors exit 3)."""
    docs: list[Document] = []
    try:
        if args.text is not None:
            text = check_text(args.text, "arg", args.max_line_bytes)
            docs += parse_input(text, "arg", args.input_format)
        for path in args.file:
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
            text = decode_input(data, str(path), args.max_line_bytes)
            docs += parse_input(text, str(path), args.input_format)
        if args.text is None and not args.file:
            text = decode_input(stdin.read(), "stdin", args.max_line_bytes)
            docs += parse_input(text, "stdin", args.input_format)
    except InputError as exc:
        raise Failure(EXIT_INPUT, f"input error: {exc}") from exc
    return docs


def default_jobs() -> int:
    """Worker processes for big inputs: the CPUs this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def run_batch(args: argparse.Namespace, stdin: BinaryIO, out: Output) -> int:
    docs = read_inputs(args, stdin)
    engine = load_engine(args.model, args.batch_size, args.expect_version, args.expect_sha256)
    jobs = args.jobs or default_jobs()
    try:
        if out.table or jobs == 1:
            for result in engine.run(docs):
                out.write(records_for(result, engine.model, args.article))
        else:

            def render(results: list[DocumentResult]) -> list[str]:
                return [
                    json_line(r)
                    for result in results
                    for r in records_for(result, engine.model, args.article)
                ]

            for lines in engine.map_chunks(docs, render, jobs=jobs):
                out.write_lines(lines)
    except ModelError as exc:
        raise Failure(EXIT_MODEL, f"model error: {exc}") from exc
    finally:
        out.flush()
    return EXIT_OK


# --------------------------------------------------------------------------- stream mode


class LineReader:
    """Lines from a file descriptor: blocks only when no complete line is waiting.

    Reading the descriptor directly (not through a text wrapper) lets each line be decoded
    on its own, so one line of bad bytes cannot end the stream, and lets `select` tell
    whether more lines are already there to batch. A line over `limit` bytes is never held
    in memory: it is skipped up to its newline and reported as `None`.
    """

    def __init__(self, fd: int, limit: int) -> None:
        self.fd = fd
        self.limit = limit
        self.buf = bytearray()
        self.scan = 0  # bytes of buf already known to hold no newline
        self.skipping = False  # inside an over-long line
        self.eof = False
        self.lineno = 0

    def _more_waiting(self) -> bool:
        try:
            return bool(select.select([self.fd], [], [], 0)[0])
        except (OSError, ValueError):
            return False

    def _take(self, out: list[tuple[int, bytes | None]], max_lines: int) -> None:
        while len(out) < max_lines:
            nl = self.buf.find(b"\n", self.scan)
            if nl < 0:
                self.scan = len(self.buf)
                if self.scan > self.limit:
                    self.skipping = True
                    self.buf.clear()
                    self.scan = 0
                return
            self.lineno += 1
            line = bytes(self.buf[:nl])
            del self.buf[: nl + 1]
            self.scan = 0
            too_long = self.skipping or len(line) > self.limit
            self.skipping = False
            out.append((self.lineno, None if too_long else line))

    def read_lines(self, max_lines: int) -> list[tuple[int, bytes | None]]:
        """At least one (line number, bytes or None) unless at end of input."""
        out: list[tuple[int, bytes | None]] = []
        while True:
            self._take(out, max_lines)
            if len(out) >= max_lines:
                return out
            if self.eof:
                if self.buf or self.skipping:
                    self.lineno += 1
                    out.append((self.lineno, None if self.skipping else bytes(self.buf)))
                    self.buf.clear()
                    self.skipping = False
                return out
            if out and not self._more_waiting():
                return out
            chunk = os.read(self.fd, 1 << 16)
            if chunk:
                self.buf += chunk
            else:
                self.eof = True


def parse_stream_line(lineno: int, raw: bytes | None, limit: int) -> Document | str | None:
    """A Document, an error message, or None for a blank line."""
    if raw is None:
        return f"stdin: line {lineno}: over the limit of {limit} bytes"
    if not raw.strip():
        return None
    try:
        check_binary(raw, f"stdin: line {lineno}")
        text = raw.decode("utf-8").removesuffix("\r")
        return parse_jsonl_line(text, lineno, "stdin")
    except UnicodeDecodeError as exc:
        return f"stdin: line {lineno}: not valid UTF-8 (byte {exc.start} of the line)"
    except InputError as exc:
        return str(exc)


def answer(engine: Engine, docs: list[Document]) -> dict[int, DocumentResult | str]:
    """Score docs together; if that fails, one by one, so only the culprit gets an error."""
    try:
        return {d.line: r for d, r in zip(docs, engine.score_batch(docs), strict=True)}
    except ModelError as exc:
        if len(docs) == 1:
            return {docs[0].line: f"stdin: line {docs[0].line}: {exc}"}
    out: dict[int, DocumentResult | str] = {}
    for doc in docs:
        out.update(answer(engine, [doc]))
    return out


def run_stream(args: argparse.Namespace, stdin: BinaryIO, out: Output) -> int:
    engine = load_engine(args.model, args.batch_size, args.expect_version, args.expect_sha256)
    reader = LineReader(stdin.fileno(), args.max_line_bytes)
    while lines := reader.read_lines(STREAM_BATCH_LINES):
        parsed = [(n, parse_stream_line(n, raw, args.max_line_bytes)) for n, raw in lines]
        docs = [p for _, p in parsed if isinstance(p, Document)]
        results = answer(engine, docs) if docs else {}
        for n, item in parsed:
            item = results.get(n, item) if isinstance(item, Document) else item
            if item is None:
                continue
            if isinstance(item, str):
                print(f"{PROG}: {item}", file=sys.stderr, flush=True)
                out.write([error_record(n, item)])
            else:
                out.write(records_for(item, engine.model, article=True))
        out.flush()
    return EXIT_OK


# --------------------------------------------------------------------------- main


def main(
    argv: list[str] | None = None, stdin: BinaryIO | None = None, stdout: BinaryIO | None = None
) -> int:
    """Run the CLI; returns the exit code (streams default to the process's own)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    stdin = stdin if stdin is not None else sys.stdin.buffer
    stdout = stdout if stdout is not None else sys.stdout.buffer
    if isinstance(stdout, io.RawIOBase):
        # PYTHONUNBUFFERED / -u make stdout raw, and a raw write may be partial; a buffered
        # writer retries until every byte is out, so no line is ever cut.
        stdout = open(stdout.fileno(), "wb", closefd=False)  # noqa: SIM115 -- lives until exit
    out = Output(stdout, args.format)
    if args.text is not None and args.file:
        parser.error("give the text as an argument or with --file, not both")
    if args.stream and (args.text is not None or args.file):
        parser.error("--stream reads stdin; it takes no TEXT or --file")
    if args.batch_size < 1 or args.max_line_bytes < 1 or args.jobs < 0:
        parser.error("--batch-size and --max-line-bytes must be at least 1, --jobs at least 0")
    if args.expect_sha256 is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", args.expect_sha256):
        parser.error("--expect-sha256 takes the 64 hex digits of a SHA-256")
    if args.expect_version is not None and not args.expect_version.strip():
        parser.error("--expect-version takes a model version, e.g. 7feed339ff1f")
    if not args.stream and args.text is None and not args.file and stdin.isatty():
        parser.error("no input: give TEXT, --file PATH, or pipe text to stdin")
    from model.registry import runtime

    try:
        with runtime(args.runtime):
            return run_stream(args, stdin, out) if args.stream else run_batch(args, stdin, out)
    except Failure as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    import signal

    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `predict.py ... | head` ends quietly
    try:
        sys.exit(main())
    except Exception as exc:  # a bug: say so, with the traceback, under its own exit code
        import traceback

        traceback.print_exc()
        print(f"{PROG}: internal error: {exc!r}", file=sys.stderr)
        sys.exit(EXIT_INTERNAL)
