"""Double annotation: packets for two independent passes, their agreement, the final labels.

    python -m data.annotate packets OUT_DIR [--parts N] [--skip-labelled PASS_A]
    python -m data.annotate agreement PASS_A PASS_B [--disagreements OUT.jsonl]
    python -m data.annotate merge PASS_A PASS_B ADJUDICATION  # -> data/labels/{seed,corpus}.jsonl

Every real sentence is labelled twice by annotators who do not see each other's labels;
a third read settles each disagreement and records why (ADJUDICATION: one JSON object per
settled sentence with `key`, `categories`, `stance`, `why`). Packets hold whole articles,
stories kept together, so an annotator reads each sentence in its context. Pass files are
JSONL with `key` (`ARTICLE_ID:POSITION`), `categories` and `stance`.
Agreement is Cohen's kappa (scikit-learn) for stance and for each category.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

from data.build import DATA_DIR, Paths, article_sentences
from data.holdout import Holdout
from data.records import DataError, dumps_jsonl, read_jsonl
from data.stories import cluster_stories, duplicate_positions
from model import exitcodes
from model.fsutil import atomic_write_text
from model.schema import CATEGORIES, STANCES


def units(paths: Paths, holdout: Holdout | None) -> dict[str, dict]:
    """Every real sentence to label, by key, with its article and story (repeats dropped)."""
    articles, sentences = article_sentences(paths, holdout)
    story_of = cluster_stories(sentences, {a: m.get("story", "") for a, m in articles.items()})
    dropped = duplicate_positions(sentences, story_of)
    out = {}
    for aid in sorted(sentences):
        for pos, text in enumerate(sentences[aid]):
            if pos not in dropped.get(aid, ()):
                out[f"{aid}:{pos}"] = {
                    "article_id": aid,
                    "position": pos,
                    "text": text,
                    "story_id": story_of[aid],
                    "meta": articles[aid],
                }
    return out


def write_packets(
    paths: Paths,
    out_dir: Path,
    parts: int,
    holdout: Holdout | None,
    skip: set[str] | frozenset[str] = frozenset(),
) -> list[Path]:
    """Split the articles (stories kept whole) into `parts` packets of similar size,
    leaving out sentences already labelled (`skip`: their keys)."""
    todo = {k: u for k, u in units(paths, holdout).items() if k not in skip}
    by_story: dict[str, list[dict]] = defaultdict(list)
    for key, u in todo.items():
        by_story[u["story_id"]].append(dict(u, key=key))
    loads = [0] * parts
    packets: list[list[dict]] = [[] for _ in range(parts)]
    for story in sorted(by_story, key=lambda s: (-len(by_story[s]), s)):
        k = loads.index(min(loads))
        packets[k] += by_story[story]
        loads[k] += len(by_story[story])
    written = []
    for k, items in enumerate(packets, 1):
        lines, last = [], None
        for u in sorted(items, key=lambda u: (u["article_id"], u["position"])):
            if u["article_id"] != last:
                m = u["meta"]
                where = ", ".join(str(m.get(f) or "?") for f in ("outlet", "date", "region"))
                lines.append(f"\n=== ARTICLE {u['article_id']} ({where})")
                last = u["article_id"]
            lines.append(f"[{u['key']}] {u['text']}")
        path = out_dir / f"packet_{k}.txt"
        atomic_write_text(path, "\n".join(lines).lstrip() + "\n")
        written.append(path)
    return written


def read_pass(path: Path) -> dict[str, dict]:
    """One annotation pass by key; unknown labels and repeated keys are refused."""
    out = {}
    for rec in read_jsonl(path):
        key = rec.get("key")
        cats, stance = rec.get("categories"), rec.get("stance")
        if not isinstance(cats, list) or any(c not in CATEGORIES for c in cats):
            raise DataError(f"{path}: {key}: bad categories {cats!r}")
        if stance not in STANCES:
            raise DataError(f"{path}: {key}: bad stance {stance!r}")
        if key in out:
            raise DataError(f"{path}: {key} labelled twice")
        out[key] = {"categories": sorted(set(cats), key=CATEGORIES.index), "stance": stance}
    return out


def agreement(a: dict[str, dict], b: dict[str, dict]) -> dict:
    """Cohen's kappa (stance, each category) and raw agreement over the keys both labelled."""
    from sklearn.metrics import cohen_kappa_score, f1_score

    keys = sorted(set(a) & set(b))
    sa = [a[k]["stance"] for k in keys]
    sb = [b[k]["stance"] for k in keys]
    out = {
        "sentences": len(keys),
        "stance_kappa": float(cohen_kappa_score(sa, sb)),
        "stance_agreement": sum(x == y for x, y in zip(sa, sb, strict=True)) / max(len(keys), 1),
        "stance_macro_f1": float(f1_score(sa, sb, average="macro", labels=list(STANCES))),
        "categories": {},
        "exact_match": sum(a[k] == b[k] for k in keys) / max(len(keys), 1),
    }
    ya = [[c in a[k]["categories"] for c in CATEGORIES] for k in keys]
    yb = [[c in b[k]["categories"] for c in CATEGORIES] for k in keys]
    out["category_micro_f1"] = float(f1_score(ya, yb, average="micro", zero_division=0))
    for j, c in enumerate(CATEGORIES):
        ca, cb = [r[j] for r in ya], [r[j] for r in yb]
        kappa = cohen_kappa_score(ca, cb) if (any(ca) or any(cb)) else float("nan")
        out["categories"][c] = {
            "kappa": float(kappa),
            "positives_a": sum(ca),
            "positives_b": sum(cb),
        }
    return out


def agreement_markdown(stats: dict) -> str:
    """The agreement table for the data card."""
    rows = [
        f"Two independent passes over {stats['sentences']} real sentences.",
        "",
        "| label | Cohen's kappa | positives (pass A / pass B) |",
        "|---|---:|---:|",
        f"| stance (3 classes) | {stats['stance_kappa']:.3f} | - |",
    ]
    for c, v in stats["categories"].items():
        rows.append(f"| `{c}` | {v['kappa']:.3f} | {v['positives_a']} / {v['positives_b']} |")
    rows += [
        "",
        f"Raw stance agreement {stats['stance_agreement']:.3f}; stance macro-F1 of one pass "
        f"against the other {stats['stance_macro_f1']:.3f}; category micro-F1 "
        f"{stats['category_micro_f1']:.3f}; both labels identical on "
        f"{stats['exact_match']:.1%} of sentences.",
    ]
    return "\n".join(rows) + "\n"


def merge(
    paths: Paths, a: dict, b: dict, settled: dict[str, dict], holdout: Holdout | None
) -> dict[str, list[dict]]:
    """Final label records per source: agreed labels, else the adjudicated one."""
    todo = units(paths, holdout)
    missing = [k for k in todo if k not in a or k not in b]
    if missing:
        raise DataError(f"{len(missing)} sentence(s) lack a pass label, first {missing[:3]}")
    out: dict[str, list[dict]] = defaultdict(list)
    for key, u in todo.items():
        if a[key] == b[key]:
            final, who = a[key], "double:agreed"
        elif key in settled:
            final, who = settled[key], "double:adjudicated"
        else:
            raise DataError(f"{key}: the passes disagree and no adjudication settles it")
        source = "seed" if u["meta"].get("url") is None else "corpus"
        out[source].append(
            {
                "id": f"{u['article_id']}-{u['position']:03d}",
                "article_id": u["article_id"],
                "position": u["position"],
                "text": u["text"],
                "categories": final["categories"],
                "stance": final["stance"],
                "source": source,
                "labeller": who,
            }
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--holdout", type=Path, default=None)
    sub = parser.add_subparsers(dest="verb", required=True)
    p = sub.add_parser("packets", help="write annotation packets")
    p.add_argument("out_dir", type=Path)
    p.add_argument("--parts", type=int, default=4)
    p.add_argument(
        "--skip-labelled", type=Path, help="a pass file: leave out the sentences it labels"
    )
    g = sub.add_parser("agreement", help="kappa between two passes")
    g.add_argument("pass_a", type=Path)
    g.add_argument("pass_b", type=Path)
    g.add_argument("--disagreements", type=Path, help="write the disagreements here (JSONL)")
    m = sub.add_parser("merge", help="write final labels from two passes and adjudication")
    m.add_argument("pass_a", type=Path)
    m.add_argument("pass_b", type=Path)
    m.add_argument("adjudication", type=Path)
    args = parser.parse_args(argv)
    paths = Paths(args.data_dir)
    try:
        holdout = Holdout.load(args.holdout)
        if args.verb == "packets":
            skip = set(read_pass(args.skip_labelled)) if args.skip_labelled else set()
            for path in write_packets(paths, args.out_dir, args.parts, holdout, skip):
                print(path)
            return 0
        a, b = read_pass(args.pass_a), read_pass(args.pass_b)
        if args.verb == "agreement":
            stats = agreement(a, b)
            print(agreement_markdown(stats), end="")
            if args.disagreements:
                todo = units(paths, holdout)
                rows = [
                    {"key": k, "text": todo[k]["text"], "a": a[k], "b": b[k]}
                    for k in sorted(set(a) & set(b))
                    if a[k] != b[k] and k in todo
                ]
                atomic_write_text(args.disagreements, dumps_jsonl(rows))
                print(f"{len(rows)} disagreement(s) written to {args.disagreements}")
            return 0
        settled = read_pass(args.adjudication)
        for source, records in merge(paths, a, b, settled, holdout).items():
            atomic_write_text(paths.labels / f"{source}.jsonl", dumps_jsonl(records))
            print(f"{paths.labels / f'{source}.jsonl'}: {len(records)} sentences")
        return 0
    except DataError as exc:
        print(f"data.annotate: error: {exc}", file=sys.stderr)
        return exitcodes.INPUT


if __name__ == "__main__":
    sys.exit(main())
