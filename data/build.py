"""Build the labelled dataset: raw articles + hand labels + authored sentences -> splits.

Why it is built rather than edited by hand: the sentences come from `model.sentences`,
the same splitter `predict.py` uses, and every hand label is checked against the text the
splitter produces now, so a change to the splitter that moves a sentence fails loudly
instead of silently shifting labels.

Splits are grouped by story (`data/stories.py`) and stored in
`data/splits/assignment.json`. A story keeps its split once assigned; new stories are placed
by a seeded search that first meets the dev/test minimums (`SPLIT_MINIMUMS`) and then keeps
the shares near `TARGET_SHARE`; authored sentences always go to train. Any article or
sentence on the evaluators' holdout list is refused (`data/holdout.py`). Running the build
twice gives byte-identical files.

    python -m data.build            # rebuild splits, stats, SOURCES.md and the card's tables
    python -m data.build --resplit  # split every story anew (a new dataset version)
    python -m data.build --new-to train  # new stories all train; dev and test stay as they are

`--new-to train` is for a batch of training data added under a fixed yardstick: dev and
test keep exactly their stories, so figures before and after the batch compare on the same
sentences (an article that joins a story already in dev or test still goes with its story).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data.holdout import Holdout
from data.records import SPLITS, DataError, dumps_jsonl, read_jsonl
from data.stories import cluster_stories, duplicate_positions
from model import exitcodes
from model.fsutil import atomic_write_text
from model.schema import CATEGORIES, STANCES
from model.sentences import split_sentences

log = logging.getLogger("data.build")

DATA_DIR = Path(__file__).resolve().parent
SPLIT_SEED = 13
# Dataset version (see the data card's changelog): 2 = real corpus, split by story;
# 2.1 and 2.2 = more real training stories, dev and test unchanged.
DATASET_VERSION = "2.2"
# Target shares of real sentences in dev and test; the rest of the real data trains.
TARGET_SHARE = {"dev": 0.18, "test": 0.25}
# What dev and test must show at least (real sentences; "category" is per category).
SPLIT_MINIMUMS: dict[str, dict[str, int]] = {
    "test": {"sentences": 400, "kontra": 80, "category": 15},
    "dev": {"sentences": 300, "category": 10},
}
CARD_START, CARD_END = "<!-- stats:start -->", "<!-- stats:end -->"
# Articles labelled by selection (active learning; written by `data.labelstudio import
# --partial`): their unlabelled sentences are left out instead of failing the build.
PARTIAL_FILE = "partial.json"


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


def article_sentences(paths: Paths, holdout: Holdout | None) -> tuple[dict, dict[str, list[str]]]:
    """Article metadata and each article's sentences as the splitter cuts them.

    Refuses (DataError listing every hit) any article whose address or sentence is on the
    evaluators' holdout list, so nothing of the private test set can reach a split.
    """
    articles = {m["id"]: m for m in read_jsonl(paths.raw / "articles.jsonl")}
    sentences = {
        aid: [s.text for s in split_sentences((paths.raw / m["file"]).read_text(encoding="utf-8"))]
        for aid, m in sorted(articles.items())
    }
    if holdout is not None:
        problems = [
            p
            for aid, m in sorted(articles.items())
            for p in holdout.article_problems(f"article {aid}", m.get("url"), sentences[aid])
        ]
        if problems:
            raise DataError(
                "refused: material of the evaluators' private test set "
                f"({holdout.source}); remove these articles:\n  " + "\n  ".join(problems)
            )
    return articles, sentences


def partial_articles(paths: Paths) -> set[str]:
    """Ids of articles labelled by selection (`labels/partial.json`; none if absent)."""
    path = paths.labels / PARTIAL_FILE
    if not path.exists():
        return set()
    try:
        return set(json.loads(path.read_text(encoding="utf-8"))["articles"])
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: unreadable list of partially labelled articles ({exc})") from exc


def real_records(paths: Paths, holdout: Holdout | None = None) -> list[dict]:
    """Hand-labelled sentences with their story, each checked against the splitter's output.

    Sentences repeated within a story (an outlet's copy of another's text) are dropped
    before labelling, so each story counts every sentence once.
    """
    articles, sentences = article_sentences(paths, holdout)
    story_of = cluster_stories(sentences, {a: m.get("story", "") for a, m in articles.items()})
    dropped = duplicate_positions(sentences, story_of)
    partial = partial_articles(paths)
    left_out = 0
    labelled: dict[tuple[str, int], dict] = {}
    for label_file in sorted(paths.labels.glob("*.jsonl")):
        for rec in read_jsonl(label_file):
            labelled[(rec["article_id"], rec["position"])] = rec
    out = []
    for article_id in sorted(articles):
        for position, text in enumerate(sentences[article_id]):
            rec = labelled.pop((article_id, position), None)
            if position in dropped.get(article_id, ()):
                continue  # a repeat within the story: never labelled, never counted
            if rec is None and article_id in partial:
                left_out += 1
                continue
            if rec is None:
                raise DataError(f"{article_id}: sentence {position} has no label: {text!r}")
            if rec["text"] != text:
                raise DataError(
                    f"{article_id}: sentence {position} changed under the splitter:\n"
                    f"  labelled: {rec['text']!r}\n  split:    {text!r}"
                )
            out.append(dict(rec, story_id=story_of[article_id]))
    if labelled:
        extra = sorted(labelled)[:5]
        raise DataError(f"labels for sentences the splitter no longer produces: {extra}")
    if left_out:
        log.info("left out %d unlabelled sentence(s) of partially labelled articles", left_out)
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


def _story_features(records: list[dict]) -> np.ndarray:
    """Per story: sentences, kontra sentences, then one count per category."""
    row = [len(records), sum(r["stance"] == "kontra" for r in records)]
    row += [sum(c in r["categories"] for r in records) for c in CATEGORIES]
    return np.array(row, dtype=np.float64)


def _split_score(totals: np.ndarray, n_real: float) -> tuple[float, float]:
    """(shortfall against SPLIT_MINIMUMS, drift from TARGET_SHARE): lower is better.

    `totals` is (3, features) in SPLITS order; shortfalls are relative, so a missing
    kontra sentence in a small target weighs more than a missing one in a big target.
    """
    shortfall = 0.0
    for split, need in SPLIT_MINIMUMS.items():
        got = totals[SPLITS.index(split)]
        wants = [need["sentences"], need.get("kontra", 0)] + [need["category"]] * len(CATEGORIES)
        for have, want in zip(got, wants, strict=True):
            if want:
                shortfall += max(0.0, want - have) / want
    drift = sum(
        abs(totals[SPLITS.index(s)][0] / max(n_real, 1.0) - share)
        for s, share in TARGET_SHARE.items()
    )
    return round(shortfall, 9), round(drift, 9)


def assign_stories(
    real: list[dict], assignment: dict[str, str], seed: int = SPLIT_SEED, tries: int = 4000
) -> dict[str, str]:
    """Assign unassigned stories to splits without touching stories already assigned.

    A seeded random search (then single-story moves until none helps) picks the split that
    first meets SPLIT_MINIMUMS in dev and test and then keeps their shares of the real
    sentences near TARGET_SHARE. With three or more stories every split gets one.
    """
    by_story: dict[str, list[dict]] = {}
    for r in real:
        by_story.setdefault(r["story_id"], []).append(r)
    new = sorted(s for s in by_story if s not in assignment)
    if not new:
        return dict(assignment)
    feats = np.stack([_story_features(by_story[s]) for s in new])
    fixed = np.zeros((len(SPLITS), feats.shape[1]))
    for story, split in assignment.items():
        if story in by_story:
            fixed[SPLITS.index(split)] += _story_features(by_story[story])
    n_real = float(len(real))
    need_all = len(by_story) >= 3

    def score(choice: np.ndarray) -> tuple[float, float, float]:
        totals = fixed + np.stack([feats[choice == k].sum(axis=0) for k in range(len(SPLITS))])
        empty = float(need_all and bool((totals[:, 0] == 0).any()))
        return (empty, *_split_score(totals, n_real))

    rng = np.random.default_rng(seed)
    probs = [1 - sum(TARGET_SHARE.values())] + [TARGET_SHARE[s] for s in SPLITS[1:]]
    best = rng.choice(len(SPLITS), size=len(new), p=probs)
    best_score = score(best)
    for _ in range(tries):
        cand = rng.choice(len(SPLITS), size=len(new), p=probs)
        cand_score = score(cand)
        if cand_score < best_score:
            best, best_score = cand, cand_score
    improved = True
    while improved:
        improved = False
        for i in range(len(new)):
            for k in range(len(SPLITS)):
                if k == best[i]:
                    continue
                cand = best.copy()
                cand[i] = k
                cand_score = score(cand)
                if cand_score < best_score:
                    best, best_score, improved = cand, cand_score, True
    if best_score[0]:
        raise DataError("no split assignment gives every split a real story")
    return dict(assignment) | {s: SPLITS[k] for s, k in zip(new, best, strict=True)}


def label_counts(records: list[dict]) -> dict:
    """Per-label sentence counts, in schema order (zero counts kept)."""
    cats = Counter(c for r in records for c in r["categories"])
    stances = Counter(r["stance"] for r in records)
    return {
        "sentences": len(records),
        "stories": len({r.get("story_id", r["article_id"]) for r in records}),
        "articles": len({r["article_id"] for r in records}),
        "by_source": dict(sorted(Counter(r["source"] for r in records).items())),
        "categories": {c: cats.get(c, 0) for c in CATEGORIES},
        "no_category": sum(1 for r in records if not r["categories"]),
        "stance": {s: stances.get(s, 0) for s in STANCES},
    }


def stats_markdown(stats: dict) -> str:
    """The label-count table that the data card shows between its stats markers.

    Columns count real sentences per split, then their total, then the authored sentences
    (train only), so the targets on real data can be read off directly.
    """
    cols = [("train (real)", stats["train"]["real"]), ("dev", stats["dev"]["real"])]
    cols += [("test", stats["test"]["real"]), ("real total", stats["all"]["real"])]
    cols += [("authored (train)", stats["authored"])]
    rows = ["| label | " + " | ".join(n for n, _ in cols) + " |\n|---|" + "---:|" * len(cols)]

    def row(name: str, get) -> None:
        rows.append(f"| {name} | " + " | ".join(str(get(c)) for _, c in cols) + " |")

    row("sentences", lambda s: s["sentences"])
    row("stories", lambda s: s["stories"])
    row("articles (or authored groups)", lambda s: s["articles"])
    for src in ("seed", "corpus"):
        row(f"source: {src}", lambda s, src=src: s["by_source"].get(src, 0))
    for c in CATEGORIES:
        row(f"category: `{c}`", lambda s, c=c: s["categories"][c])
    row("no category", lambda s: s["no_category"])
    for st in STANCES:
        row(f"stance: `{st}`", lambda s, st=st: s["stance"][st])
    return "\n".join(rows) + "\n"


def sources_markdown(articles: list[dict]) -> str:
    """Every article and where it came from (regenerated with the splits)."""
    rows = [
        "# Sources",
        "",
        "Every article in `raw/`, with the address of the stored public page it was copied "
        "from (corpus) or the shared seed file. Generated by `python -m data.build`.",
        "",
        "| id | outlet | date | region | address |",
        "|---|---|---|---|---|",
    ]
    for m in articles:
        where = m.get("url") or f"../shared/seeds/{m['file']}"
        cells = [m["id"], m.get("outlet") or "?", m.get("date") or "?", m.get("region") or "-"]
        cells = [str(c).replace("|", "/") for c in cells]
        rows.append("| " + " | ".join([*cells, where]) + " |")
    return "\n".join(rows) + "\n"


def minimum_checks(stats: dict) -> list[tuple[str, int, int]]:
    """(what, have, need) for every SPLIT_MINIMUMS entry, counted on real sentences."""
    out = []
    for split, need in SPLIT_MINIMUMS.items():
        real = stats[split]["real"]
        out.append((f"{split} real sentences", real["sentences"], need["sentences"]))
        if "kontra" in need:
            out.append((f"{split} kontra", real["stance"]["kontra"], need["kontra"]))
        out += [(f"{split} {c}", real["categories"][c], need["category"]) for c in CATEGORIES]
    return out


def build(
    paths: Paths,
    seed: int = SPLIT_SEED,
    holdout: Holdout | None = None,
    resplit: bool = False,
    new_to: str | None = None,
) -> dict:
    """Write the split files, the assignment, stats.json and the card's tables.

    `resplit` discards the stored assignment and splits every story anew (done once per
    dataset version, recorded in the data card's changelog); otherwise stored stories keep
    their split and only new stories are placed: by the balancing search, or all into the
    split `new_to` names.
    """
    if new_to is not None and (resplit or new_to not in SPLITS):
        raise DataError(f"--new-to takes one of {SPLITS} and cannot go with --resplit")
    real = real_records(paths, holdout)
    authored = [dict(r, story_id=r["article_id"]) for r in authored_records(paths)]
    stored = json.loads(paths.assignment.read_text()) if paths.assignment.exists() else {}
    if not resplit and stored and "stories" not in stored:
        raise DataError(
            f"{paths.assignment} splits by article (dataset v1); rebuild with --resplit "
            "to split by story"
        )
    known = {} if resplit else stored.get("stories", {})
    if new_to is None:
        assignment = assign_stories(real, known, seed=seed)
    else:
        new = {r["story_id"] for r in real} - set(known)
        assignment = dict(known) | dict.fromkeys(new, new_to)
    splits: dict[str, list[dict]] = {s: [] for s in SPLITS}
    for rec in real:
        splits[assignment[rec["story_id"]]].append(rec)
    splits["train"].extend(authored)
    for s in SPLITS:
        splits[s].sort(key=lambda r: (r["source"] == "authored", r["article_id"], r["position"]))
        atomic_write_text(paths.splits / f"{s}.jsonl", dumps_jsonl(splits[s]))
    stats = {s: label_counts(splits[s]) for s in SPLITS}
    stats["all"] = label_counts([r for s in SPLITS for r in splits[s]])
    for s in [*SPLITS, "all"]:
        pool = splits[s] if s != "all" else [r for x in SPLITS for r in splits[x]]
        stats[s]["real"] = label_counts([r for r in pool if r["source"] != "authored"])
    stats["authored"] = label_counts(authored)
    atomic_write_text(
        paths.assignment,
        json.dumps(
            {
                "version": DATASET_VERSION,
                "seed": stored.get("seed", seed) if not resplit else seed,
                "rule": "grouped by story; authored sentences always train",
                "stories": dict(sorted(assignment.items())),
            },
            indent=2,
            ensure_ascii=False,
        )
        + "\n",
    )
    atomic_write_text(paths.splits / "stats.json", json.dumps(stats, indent=2) + "\n")
    atomic_write_text(
        paths.root / "SOURCES.md", sources_markdown(read_jsonl(paths.raw / "articles.jsonl"))
    )
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
    parser.add_argument("--holdout", type=Path, default=None, help="holdout list (JSON)")
    parser.add_argument(
        "--resplit", action="store_true", help="split every story anew (new dataset version)"
    )
    parser.add_argument(
        "--new-to", choices=SPLITS, default=None, help="put every new story in this split"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        holdout = Holdout.load(args.holdout)
        stats = build(
            Paths(args.data_dir),
            seed=args.seed,
            holdout=holdout,
            resplit=args.resplit,
            new_to=args.new_to,
        )
    except (DataError, KeyError, OSError) as exc:
        print(f"data.build: error: {exc}", file=sys.stderr)
        return exitcodes.INPUT
    print(stats_markdown(stats), end="")
    short = [(what, have, need) for what, have, need in minimum_checks(stats) if have < need]
    for what, have, need in short:
        print(f"below target: {what} = {have} (need {need})")
    if not short:
        print("all split targets met (real sentences: test and dev minimums)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
