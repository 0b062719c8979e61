"""Check a labelled dataset before anything trains or evaluates on it.

    python -m data.validate [SPLITS_DIR]     # exit 0 when clean, 3 with every problem listed

Rejects unknown labels, missing stance, duplicate ids, empty text, bad sources, authored
sentences outside train, articles or stories that span two splits (leakage), and any
sentence or article address on the evaluators' holdout list (`data/holdout.py`; the raw
article list beside the splits folder is checked too). The trainers and the evaluation
harness call `validate_splits` too, so a broken copy cannot slip through.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

from data.holdout import Holdout
from data.records import SPLITS, DataError, read_jsonl
from model import exitcodes
from model.schema import CATEGORIES, SOURCES, STANCES

DEFAULT_SPLITS_DIR = Path(__file__).resolve().parent / "splits"


def record_problems(rec: dict, where: str) -> list[str]:
    """Problems with one record on its own (schema and field types)."""
    problems = []
    rid = rec.get("id")
    if not isinstance(rid, str) or not rid.strip():
        problems.append(f"{where}: missing or empty id")
    text = rec.get("text")
    if not isinstance(text, str) or not text.strip():
        problems.append(f"{where} ({rid}): empty text")
    if not isinstance(rec.get("article_id"), str) or not rec.get("article_id"):
        problems.append(f"{where} ({rid}): missing article_id")
    if not isinstance(rec.get("position"), int) or rec["position"] < 0:
        problems.append(f"{where} ({rid}): position must be a non-negative integer")
    cats = rec.get("categories")
    if not isinstance(cats, list):
        problems.append(f"{where} ({rid}): categories must be a list")
    else:
        unknown = [c for c in cats if c not in CATEGORIES]
        if unknown:
            problems.append(f"{where} ({rid}): unknown categories {unknown}")
        if len(set(map(str, cats))) != len(cats):
            problems.append(f"{where} ({rid}): duplicate categories {cats}")
    if "stance" not in rec or rec["stance"] in (None, ""):
        problems.append(f"{where} ({rid}): missing stance")
    elif rec["stance"] not in STANCES:
        problems.append(f"{where} ({rid}): unknown stance {rec['stance']!r}")
    if rec.get("source") not in SOURCES:
        problems.append(f"{where} ({rid}): source must be one of {list(SOURCES)}")
    return problems


def records_problems(located: list[tuple[str, dict]]) -> list[str]:
    """Per-record problems plus duplicate ids, for records given with where they are."""
    problems: list[str] = []
    seen_ids: dict[str, str] = {}
    for where, rec in located:
        problems.extend(record_problems(rec, where))
        rid = rec.get("id")
        if isinstance(rid, str):
            if rid in seen_ids:
                problems.append(f"{where}: duplicate id {rid!r} (first at {seen_ids[rid]})")
            else:
                seen_ids[rid] = where
    return problems


def validate_splits(splits: dict[str, list[dict]], holdout: Holdout | None = None) -> list[str]:
    """All problems in a set of splits: per record, duplicates, authored-in-eval, leakage,
    and (given the list) sentences of the evaluators' private test set."""
    problems = records_problems(
        [(f"{split}:{i}", rec) for split, recs in splits.items() for i, rec in enumerate(recs, 1)]
    )
    groups: dict[str, dict[str, set[str]]] = {
        "article": defaultdict(set),
        "story": defaultdict(set),
    }
    for split, records in splits.items():
        for i, rec in enumerate(records, start=1):
            where = f"{split}:{i}"
            rid = rec.get("id")
            if split != "train" and rec.get("source") == "authored":
                problems.append(f"{where} ({rid}): authored sentence in {split}")
            for unit in groups:
                if isinstance(rec.get(f"{unit}_id"), str):
                    groups[unit][rec[f"{unit}_id"]].add(split)
            text = rec.get("text")
            if holdout is not None and isinstance(text, str) and holdout.sentence_listed(text):
                problems.append(f"{where} ({rid}): sentence is on the evaluators' holdout list")
    for unit, found in groups.items():
        for name, in_splits in sorted(found.items()):
            if len(in_splits) > 1:
                problems.append(f"{unit} {name!r} leaks across splits {sorted(in_splits)}")
    return problems


def raw_problems(raw_dir: Path, holdout: Holdout) -> list[str]:
    """Holdout addresses in the raw article list (`articles.jsonl`), if there is one."""
    meta = Path(raw_dir) / "articles.jsonl"
    if not meta.exists():
        return []
    return [
        f"{meta}: article {m.get('id')}: address {m['url']} is on the evaluators' holdout list"
        for m in read_jsonl(meta)
        if m.get("url") and holdout.url_listed(m["url"])
    ]


def load_splits(splits_dir: Path) -> dict[str, list[dict]]:
    """Read train/dev/test JSONL from a folder; a missing file is an error."""
    out = {}
    for split in SPLITS:
        path = Path(splits_dir) / f"{split}.jsonl"
        if not path.exists():
            raise DataError(f"missing split file {path}")
        out[split] = read_jsonl(path)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Validate the labelled dataset splits.")
    parser.add_argument("splits_dir", nargs="?", type=Path, default=DEFAULT_SPLITS_DIR)
    parser.add_argument("--holdout", type=Path, default=None, help="holdout list (JSON)")
    args = parser.parse_args(argv)
    try:
        holdout = Holdout.load(args.holdout)
        problems = validate_splits(load_splits(args.splits_dir), holdout)
        problems += raw_problems(Path(args.splits_dir).parent / "raw", holdout)
    except DataError as exc:
        print(f"data.validate: error: {exc}", file=sys.stderr)
        return exitcodes.INPUT
    if problems:
        for p in problems[:200]:
            print(f"data.validate: {p}", file=sys.stderr)
        more = len(problems) - 200
        if more > 0:
            print(f"data.validate: ... and {more} more", file=sys.stderr)
        print(f"data.validate: FAILED with {len(problems)} problem(s)", file=sys.stderr)
        return exitcodes.INPUT
    print(f"data.validate: OK ({args.splits_dir})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
