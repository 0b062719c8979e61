"""Build the labelled dataset: raw articles + hand labels + authored sentences -> splits.

Why it is built rather than edited by hand: the sentences come from `model.sentences`,
the same splitter `predict.py` uses, and every hand label is checked against the text the
splitter produces now, so a change to the splitter that moves a sentence fails loudly
instead of silently shifting labels.

Splits are grouped by article and stored in `data/splits/assignment.json`. An article
keeps its split forever once assigned; new real articles are assigned by a seeded search
that favours label coverage in dev and test; authored sentences always go to train.
Running the build twice gives byte-identical files.

    python -m data.build            # rebuild data/splits/*.jsonl and the data card tables
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import random
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from data.records import SPLITS, DataError, dumps_jsonl, read_jsonl
from model import exitcodes
from model.fsutil import atomic_write_text
from model.schema import CATEGORIES, STANCES
from model.sentences import split_sentences

log = logging.getLogger("data.build")

DATA_DIR = Path(__file__).resolve().parent
SPLIT_SEED = 13
# Target shares of real sentences in dev and test; the rest of the real data trains.
TARGET_SHARE = {"dev": 0.2, "test": 0.4}
CARD_START, CARD_END = "<!-- stats:start -->", "<!-- stats:end -->"


@dataclass(frozen=True)
class Paths:
    """Where one dataset lives; tests point this at a copy."""

    root: Path

    @property
    def raw(self) -> Path:
        return self.root / "raw"

    @property
    def labels(self) -> Path:
        return self.root / "labels"

    @property
    def authored(self) -> Path:
        return self.root / "authored"

    @property
    def splits(self) -> Path:
        return self.root / "splits"

    @property
    def assignment(self) -> Path:
        return self.splits / "assignment.json"

    @property
    def card(self) -> Path:
        return self.root / "README.md"


def real_records(paths: Paths) -> list[dict]:
    """Hand-labelled sentences, each checked against the splitter's output for its article."""
    articles = {m["id"]: m for m in read_jsonl(paths.raw / "articles.jsonl")}
    labelled: dict[tuple[str, int], dict] = {}
    for label_file in sorted(paths.labels.glob("*.jsonl")):
        for rec in read_jsonl(label_file):
            labelled[(rec["article_id"], rec["position"])] = rec
    out = []
    for article_id, meta in sorted(articles.items()):
        text = (paths.raw / meta["file"]).read_text(encoding="utf-8")
        sentences = split_sentences(text)
        for position, sentence in enumerate(sentences):
            rec = labelled.pop((article_id, position), None)
            if rec is None:
                raise DataError(
                    f"{article_id}: sentence {position} has no label: {sentence.text!r}"
                )
            if rec["text"] != sentence.text:
                raise DataError(
                    f"{article_id}: sentence {position} changed under the splitter:\n"
                    f"  labelled: {rec['text']!r}\n  split:    {sentence.text!r}"
                )
            out.append(rec)
    if labelled:
        extra = sorted(labelled)[:5]
        raise DataError(f"labels for sentences the splitter no longer produces: {extra}")
    return out


def authored_records(paths: Paths) -> list[dict]:
    """Sentences written by us for thin labels (train only)."""
    out = []
    for f in sorted(paths.authored.glob("*.jsonl")):
        for rec in read_jsonl(f):
            # Train on text exactly as predict.py will see it: one sentence, no dateline.
            cut = [s.text for s in split_sentences(rec.get("text", ""))]
            if cut != [rec.get("text")]:
                raise DataError(
                    f"{f.name}: {rec.get('id')}: text is not one sentence as the splitter "
                    f"cuts it: {cut!r}"
                )
            out.append(rec)
    return sorted(out, key=lambda r: (r["article_id"], r["position"]))


def _coverage(records: list[dict]) -> int:
    """How many distinct labels (categories and stances) a group of sentences shows."""
    return len({c for r in records for c in r["categories"]} | {r["stance"] for r in records})


def assign_new_articles(
    real: list[dict], assignment: dict[str, str], seed: int = SPLIT_SEED, tries: int = 4000
) -> dict[str, str]:
    """Assign unassigned real articles to splits without touching existing assignments.

    Searches seeded random (or, for few articles, all) assignments and keeps the one that
    shows the most labels in test, then dev, and keeps dev/test shares near the targets.
    Every split must keep at least one real article when there are three or more.
    """
    by_article: dict[str, list[dict]] = {}
    for r in real:
        by_article.setdefault(r["article_id"], []).append(r)
    new = sorted(a for a in by_article if a not in assignment)
    if not new:
        return dict(assignment)
    rng = random.Random(seed)
    if len(new) <= 8:
        candidates = list(itertools.product(SPLITS, repeat=len(new)))
        rng.shuffle(candidates)
    else:
        candidates = [tuple(rng.choice(SPLITS) for _ in new) for _ in range(tries)]
    total = len(real)
    best, best_score = None, None
    for cand in candidates:
        trial = dict(assignment) | dict(zip(new, cand, strict=True))
        groups = {s: [r for r in real if trial[r["article_id"]] == s] for s in SPLITS}
        if len(by_article) >= 3 and any(not groups[s] for s in SPLITS):
            continue
        drift = sum(abs(len(groups[s]) / total - share) for s, share in TARGET_SHARE.items())
        score = (_coverage(groups["test"]), _coverage(groups["dev"]), -round(drift, 6))
        if best_score is None or score > best_score:
            best, best_score = trial, score
    if best is None:
        raise DataError("no split assignment gives every split a real article")
    return best


def label_counts(records: list[dict]) -> dict:
    """Per-label sentence counts, in schema order (zero counts kept)."""
    cats = Counter(c for r in records for c in r["categories"])
    stances = Counter(r["stance"] for r in records)
    return {
        "sentences": len(records),
        "articles": len({r["article_id"] for r in records}),
        "by_source": dict(sorted(Counter(r["source"] for r in records).items())),
        "categories": {c: cats.get(c, 0) for c in CATEGORIES},
        "no_category": sum(1 for r in records if not r["categories"]),
        "stance": {s: stances.get(s, 0) for s in STANCES},
    }


def stats_markdown(stats: dict) -> str:
    """The label-count table that the data card shows between its stats markers."""
    head = "| label | " + " | ".join(SPLITS) + " | all |\n|---|" + "---:|" * (len(SPLITS) + 1)
    rows = [head]

    def row(name: str, get) -> None:
        vals = [get(stats[s]) for s in [*SPLITS, "all"]]
        rows.append(f"| {name} | " + " | ".join(str(v) for v in vals) + " |")

    row("sentences", lambda s: s["sentences"])
    row("articles (or authored groups)", lambda s: s["articles"])
    for src in ("seed", "corpus", "authored"):
        row(f"source: {src}", lambda s, src=src: s["by_source"].get(src, 0))
    for c in CATEGORIES:
        row(f"category: `{c}`", lambda s, c=c: s["categories"][c])
    row("no category", lambda s: s["no_category"])
    for st in STANCES:
        row(f"stance: `{st}`", lambda s, st=st: s["stance"][st])
    return "\n".join(rows) + "\n"


def build(paths: Paths, seed: int = SPLIT_SEED) -> dict:
    """Write the split files, the assignment, stats.json and the card's tables."""
    real = real_records(paths)
    authored = authored_records(paths)
    stored = json.loads(paths.assignment.read_text()) if paths.assignment.exists() else {}
    assignment = assign_new_articles(real, stored.get("articles", {}), seed=seed)
    splits: dict[str, list[dict]] = {s: [] for s in SPLITS}
    for rec in real:
        splits[assignment[rec["article_id"]]].append(rec)
    splits["train"].extend(authored)
    for s in SPLITS:
        splits[s].sort(key=lambda r: (r["source"] == "authored", r["article_id"], r["position"]))
        atomic_write_text(paths.splits / f"{s}.jsonl", dumps_jsonl(splits[s]))
    stats = {s: label_counts(splits[s]) for s in SPLITS}
    stats["all"] = label_counts([r for s in SPLITS for r in splits[s]])
    atomic_write_text(
        paths.assignment,
        json.dumps(
            {
                "seed": seed,
                "rule": "grouped by article; authored sentences always train",
                "articles": dict(sorted(assignment.items())),
            },
            indent=2,
            ensure_ascii=False,
        )
        + "\n",
    )
    atomic_write_text(paths.splits / "stats.json", json.dumps(stats, indent=2) + "\n")
    if paths.card.exists():
        card = paths.card.read_text(encoding="utf-8")
        if CARD_START in card and CARD_END in card:
            head, rest = card.split(CARD_START, 1)
            tail = rest.split(CARD_END, 1)[1]
            table = stats_markdown(stats)
            atomic_write_text(paths.card, f"{head}{CARD_START}\n{table}{CARD_END}{tail}")
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR, help="dataset folder")
    parser.add_argument("--seed", type=int, default=SPLIT_SEED, help="seed for new assignments")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        stats = build(Paths(args.data_dir), seed=args.seed)
    except (DataError, KeyError, OSError) as exc:
        print(f"data.build: error: {exc}", file=sys.stderr)
        return exitcodes.INPUT
    print(stats_markdown(stats), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
