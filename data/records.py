"""The labelled-sentence record and its JSONL files.

One record per sentence; the key order is fixed so that rebuilt files are byte-identical.
The files load with `datasets.load_dataset("json", data_files=...)` as well as with
`read_jsonl` below, which adds the line number to every error.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from pathlib import Path

FIELDS: tuple[str, ...] = (
    "id",
    "article_id",
    "story_id",
    "position",
    "text",
    "categories",
    "stance",
    "source",
    "labeller",
)
SPLITS: tuple[str, ...] = ("train", "dev", "test")


class DataError(ValueError):
    """A dataset file that cannot be used as it is."""


def read_jsonl(path: Path) -> list[dict]:
    """Read a JSONL file of objects; blank lines are skipped, anything else must parse."""
    return [rec for _, rec in read_jsonl_numbered(path)]


def read_jsonl_numbered(path: Path) -> list[tuple[int, dict]]:
    """Like `read_jsonl`, with each record's 1-based line number (blank lines count)."""
    records = []
    try:
        # Split on "\n" only: str.splitlines() would also cut at U+2028/U+2029, which
        # json.dumps(ensure_ascii=False) leaves unescaped inside a sentence.
        lines = Path(path).read_text(encoding="utf-8").split("\n")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not valid UTF-8 ({exc})") from exc
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from exc
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{number}: not valid JSON ({exc.msg})") from exc
        if not isinstance(obj, dict):
            raise DataError(f"{path}:{number}: expected a JSON object, got {type(obj).__name__}")
        records.append((number, obj))
    return records


def to_line(record: dict) -> str:
    """One record as a JSON line with the canonical key order (unknown keys follow)."""
    ordered = {k: record[k] for k in FIELDS if k in record}
    ordered.update({k: v for k, v in record.items() if k not in ordered})
    return json.dumps(ordered, ensure_ascii=False)


def dumps_jsonl(records: Iterable[dict]) -> str:
    """Records as JSONL text, one line each, ending in a newline."""
    return "".join(to_line(r) + "\n" for r in records)


def sentence_hash(text: str) -> str:
    """Identity of a sentence for overlap checks: case- and whitespace-insensitive SHA-256."""
    norm = re.sub(r"\s+", " ", text).strip().casefold()
    return hashlib.sha256(norm.encode("utf-8")).hexdigest()[:32]
