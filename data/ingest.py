"""Add collected real articles to `data/raw/` (text file plus metadata line each).

    python -m data.ingest COLLECTED.jsonl [...] [--data-dir data] [--check]

Each input line is one article as a collector saved it from a stored copy of a public web
page: `url`, `outlet`, `date`, `region`, `title` (null when the excerpt shows none), `text`
(headline, then body paragraphs one per line, verbatim), `cut` (the excerpt was cut and its
unfinished end dropped), and optionally `page_variant`, `event` (a one-line note naming the
event), `story` (a hand story key) and `collector`. Everything is checked before anything
is written: an address or sentence on the evaluators' holdout list, a known spam or mirror
domain, a missing field or empty text refuse the whole batch with every problem listed
(exit 3). Addresses already in the corpus are skipped. New ids are
`cNNN_<12 hex of the address hash>`, numbered on from the corpus. `--check` runs every
check and reports what would be added without writing, so a collector can test a batch
while collecting.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import re
import sys
from pathlib import Path
from urllib.parse import urlsplit

from data.holdout import Holdout, norm_url
from data.records import DataError, dumps_jsonl, read_jsonl, read_jsonl_numbered
from model import exitcodes
from model.fsutil import atomic_write_text
from model.sentences import split_sentences

log = logging.getLogger("data.ingest")
DATA_DIR = Path(__file__).resolve().parent
ORIGIN = "stored copy of a public web page (search tool, corpus 'pages'), first ~2,000 characters"
# Spam, mirror and machine-reworded sites met while collecting (the data card lists them).
BLOCKED_DOMAINS: frozenset[str] = frozenset(
    {
        "kievskiy.org",
        "fun-eastern.com",
        "harusidmpo.shop",
        "portalberitatribun.biz",
        "thedesignweb.co.id",
        "naaju.com",
        "saranginews.com",
        "chutogel-promosi.com",
        "nzwrestling.com",
        "semiconductor-kna.com",
        "exoticcannabisstore.com",
        "verdauen.com",
        "fisheriesstandardsampling.org",
        "paitodewatogel88.com",
        "lobakmerak.netlify.app",
        "rakyatnesia.com",
        "phongkhambenhdalieu.com",
        "916944.xyz",
    }
)
REQUIRED = ("url", "outlet", "text", "cut")
META_KEYS = (
    "outlet",
    "date",
    "region",
    "url",
    "cut",
    "page_variant",
    "event",
    "story",
    "collector",
)


def _domain(url: str) -> str:
    host = urlsplit(url).netloc.lower()
    return re.sub(r"^(www|amp|m)\.", "", host)


def article_problems(rec: dict, where: str, holdout: Holdout) -> list[str]:
    """Why one collected article may not be added (empty when it may)."""
    problems = [f"{where}: missing {k!r}" for k in REQUIRED if rec.get(k) in (None, "")]
    if problems:
        return problems
    if not isinstance(rec["text"], str) or len(split_sentences(rec["text"])) < 2:
        problems.append(f"{where}: text has fewer than 2 sentences")
    if _domain(rec["url"]) in BLOCKED_DOMAINS:
        problems.append(f"{where}: {_domain(rec['url'])} is a blocked spam/mirror domain")
    texts = [s.text for s in split_sentences(rec["text"])] + rec["text"].splitlines()
    problems += holdout.article_problems(where, rec["url"], texts)
    return problems


def ingest(
    inputs: list[Path], data_dir: Path, holdout: Holdout, check_only: bool = False
) -> list[str]:
    """Check every input, then write the new articles (unless `check_only`); returns the
    new ids (those they would get, when only checking)."""
    meta_path = data_dir / "raw" / "articles.jsonl"
    existing = read_jsonl(meta_path)
    known = {norm_url(m["url"]) for m in existing if m.get("url")}
    numbers = [int(m["id"][1:4]) for m in existing if re.match(r"c\d{3}_", m["id"])]
    next_number = max(numbers, default=0) + 1
    problems: list[str] = []
    new: list[dict] = []
    for path in inputs:
        for line, rec in read_jsonl_numbered(path):
            where = f"{path}:{line}"
            problems += article_problems(rec, where, holdout)
            key = norm_url(rec.get("url") or "")
            if key in known:
                log.info("%s: already in the corpus, skipped: %s", where, rec.get("url"))
                continue
            known.add(key)
            new.append(rec)
    if problems:
        raise DataError(f"{len(problems)} problem(s), nothing written:\n  " + "\n  ".join(problems))
    added = []
    for rec in new:
        digest = hashlib.sha256(norm_url(rec["url"]).encode()).hexdigest()[:12]
        aid = f"c{next_number:03d}_{digest}"
        next_number += 1
        added.append(aid)
    if check_only:
        return added
    for aid, rec in zip(added, new, strict=True):
        text = rec["text"].strip() + "\n"
        atomic_write_text(data_dir / "raw" / "corpus" / f"{aid}.txt", text)
        title = rec.get("title") or None
        meta = {"id": aid, "file": f"corpus/{aid}.txt", "title": title, "title_stated": bool(title)}
        meta.update({k: rec[k] for k in META_KEYS if rec.get(k) not in (None, "")})
        meta["origin"] = ORIGIN
        existing.append(meta)
    atomic_write_text(meta_path, dumps_jsonl(existing))
    return added


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+", type=Path, help="collected articles (JSONL)")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR, help="dataset folder")
    parser.add_argument("--holdout", type=Path, default=None, help="holdout list (JSON)")
    parser.add_argument("--check", action="store_true", help="run every check, write nothing")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        added = ingest(args.inputs, args.data_dir, Holdout.load(args.holdout), args.check)
    except DataError as exc:
        print(f"data.ingest: error: {exc}", file=sys.stderr)
        return exitcodes.INPUT
    key = "would_add" if args.check else "added"
    print(json.dumps({key: len(added), "ids": added}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
