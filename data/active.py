"""What to label next: the pool sentences a model is least sure of, spread over stories.

    python -m data.active TASKS.json [POOL ...] [--n 50] [--model tfidf] [--per-story 3]
                          [--stance-weight 0.5] [--config-out XML] [--data-dir data]

POOL: JSON Lines files of articles (`{"id", "text"}` as `predict.py` reads them, or the
`data.ingest` format with `url`, `title`, `outlet`, ...) or plain-text files (one article
each, id = file name without extension). Without POOL the pool is the sentences of
`data/raw/` that have no label yet (articles added by `python -m data.ingest`).

Every article is cut with the project's splitter (`model/sentences.py`); sentences
repeated within a story, sentences already labelled (same article and position, or the
same text anywhere in the labels) and fragments under three words are left out. The model
(`model.registry.load_predictor`: a backend name or a model folder) scores the rest, and
each sentence gets an informativeness in [0, 1] from its stance entropy and its closest
category's distance to the dev-tuned threshold (`data/uncertainty.py`). The N most
informative are picked greedily, at most `--per-story` from one story (articles that share
text or a hand `story` key are one story, `data/stories.py`), so one article cannot fill
the batch. Ties break by article id and position: the same pool, model and options give
the same tasks.

The output is a Label Studio tasks file (`data/labelstudio.py`): pre-annotations with
the model's decision and score (1 - informativeness), and in `data.selection` the rank and
the figures behind the pick. Sentences from `data/raw/` import straight back with
`python -m data.labelstudio import --partial`; sentences of pool files outside the corpus
import once `python -m data.ingest` has added their article (matched by address).

Holdout: a pool article whose address or any sentence is on the evaluators' holdout list
(`data/holdout.py`) is refused, with every such article listed, and nothing is written.

Exit codes (`model/exitcodes.py`): 0 ok, 2 usage, 3 input (unreadable or refused pool),
4 model.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data.build import DATA_DIR, Paths
from data.holdout import Holdout, norm_url
from data.labelstudio import (
    DEFAULT_MODEL,
    Unit,
    corpus_units,
    labelled_keys,
    labelling_config,
    load_model,
    make_task,
    model_predictions,
    write_tasks,
)
from data.records import DataError, read_jsonl, read_jsonl_numbered, sentence_hash
from data.stories import cluster_stories, duplicate_positions
from data.uncertainty import STANCE_WEIGHT
from model import exitcodes
from model.artifact import ArtifactError
from model.fsutil import atomic_write_text
from model.sentences import split_sentences

log = logging.getLogger("data.active")

MIN_WORDS = 3
DEFAULT_N = 50
DEFAULT_PER_STORY = 3
SCORE_CHUNK = 512


@dataclass(frozen=True)
class PoolArticle:
    """One pool article: id, text and what is known about it (`url`, `title`, ...)."""

    id: str
    text: str
    meta: dict
    where: str


def read_pool(files: Sequence[Path]) -> list[PoolArticle]:
    """Articles from JSONL (`text` required) and plain-text files; ids must be unique."""
    out: list[PoolArticle] = []
    for path in files:
        path = Path(path)
        if path.suffix.lower() in (".jsonl", ".json"):
            for line, rec in read_jsonl_numbered(path):
                where = f"{path}:{line}"
                text = rec.get("text")
                if not isinstance(text, str) or not text.strip():
                    raise DataError(f"{where}: no `text`")
                if rec.get("url"):
                    default_id = "pool_" + sentence_hash(norm_url(str(rec["url"])))[:12]
                else:
                    default_id = f"{path.stem}_{line}"
                aid = str(rec.get("id") or default_id)
                meta = {k: v for k, v in rec.items() if k not in ("id", "text")}
                out.append(PoolArticle(aid, text, meta, where))
        else:
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"{path}: not valid UTF-8 ({exc})") from exc
            except OSError as exc:
                raise DataError(f"{path}: cannot read ({exc.strerror})") from exc
            out.append(PoolArticle(path.stem, text, {}, str(path)))
    ids = Counter(a.id for a in out)
    repeated = sorted(i for i, k in ids.items() if k > 1)
    if repeated:
        raise DataError(f"pool article ids are not unique: {repeated[:5]}")
    return out


def file_units(
    pool: list[PoolArticle], paths: Paths, holdout: Holdout
) -> tuple[list[Unit], list[str]]:
    """Units of the pool files (refusing holdout material), and where refusals came from.

    A pool article whose address is already in the corpus takes the corpus article's id,
    so its labelled sentences are recognised as labelled.
    """
    problems: list[str] = []
    by_url = {
        norm_url(m["url"]): m["id"]
        for m in read_jsonl(paths.raw / "articles.jsonl")
        if m.get("url")
    }
    sentences: dict[str, list[str]] = {}
    metas: dict[str, dict] = {}
    for article in pool:
        texts = [s.text for s in split_sentences(article.text)]
        problems += holdout.article_problems(article.where, article.meta.get("url"), texts)
        url = article.meta.get("url")
        aid = by_url.get(norm_url(str(url)), article.id) if url else article.id
        sentences[aid] = texts
        metas[aid] = dict(article.meta, pool=article.where)
    story_of = cluster_stories(sentences, {a: str(m.get("story") or "") for a, m in metas.items()})
    dropped = duplicate_positions(sentences, story_of)
    units = [
        Unit(aid, pos, text, story_of[aid], metas[aid], tuple(sentences[aid]))
        for aid in sorted(sentences)
        for pos, text in enumerate(sentences[aid])
        if pos not in dropped.get(aid, ())
    ]
    return units, problems


def candidates(units: list[Unit], paths: Paths) -> list[Unit]:
    """Units worth a label at all: not labelled (by key or text), not a short fragment."""
    stored = labelled_keys(paths)
    known_text = {sentence_hash(rec["text"]) for _, rec in stored.values()}
    return [
        u
        for u in units
        if u.key not in stored
        and sentence_hash(u.text) not in known_text
        and len(re.findall(r"\w+", u.text)) >= MIN_WORDS
    ]


def pick(units: Sequence[Unit], value: np.ndarray, n: int, per_story: int) -> list[int]:
    """Indices of the n most informative units, at most `per_story` from one story."""
    order = sorted(
        range(len(units)), key=lambda i: (-value[i], units[i].article_id, units[i].position)
    )
    taken: Counter[str] = Counter()
    chosen: list[int] = []
    for i in order:
        if len(chosen) == n:
            break
        if taken[units[i].story_id] >= per_story:
            continue
        taken[units[i].story_id] += 1
        chosen.append(i)
    return chosen


def select(
    units: list[Unit],
    predictor,
    n: int,
    per_story: int = DEFAULT_PER_STORY,
    stance_weight: float = STANCE_WEIGHT,
) -> tuple[list[dict], dict]:
    """Score the units, pick n, and return them as Label Studio tasks plus a summary."""
    preds: list[dict] = []
    values, explained = [], []
    for start in range(0, len(units), SCORE_CHUNK):
        chunk = units[start : start + SCORE_CHUNK]
        p, info = model_predictions(predictor, [u.text for u in chunk], stance_weight)
        preds += p
        values.append(info.value)
        explained += [info.explain(i) for i in range(len(chunk))]
        log.info("scored %d/%d sentences", min(start + SCORE_CHUNK, len(units)), len(units))
    value = np.concatenate(values) if values else np.zeros(0)
    chosen = pick(units, value, n, per_story)
    tasks = [
        make_task(
            units[i],
            preds[i],
            {"selection": {"rank": rank, **explained[i], "model": preds[i]["model_version"]}},
        )
        for rank, i in enumerate(chosen, start=1)
    ]
    summary = {
        "pool_sentences": len(units),
        "selected": len(chosen),
        "articles": len({units[i].article_id for i in chosen}),
        "stories": len({units[i].story_id for i in chosen}),
        "mean_informativeness_selected": round(float(value[chosen].mean()), 4) if chosen else None,
        "mean_informativeness_pool": round(float(value.mean()), 4) if len(value) else None,
    }
    return tasks, summary


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m data.active", description=__doc__.splitlines()[0]
    )
    parser.add_argument("out", type=Path, help="tasks file to write (Label Studio JSON)")
    parser.add_argument(
        "pool", nargs="*", type=Path, help="article files (JSONL or text); default: data/raw"
    )
    parser.add_argument("--n", type=int, default=DEFAULT_N, help="sentences to pick")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="backend name or model folder")
    parser.add_argument(
        "--per-story", type=int, default=DEFAULT_PER_STORY, help="most picks from one story"
    )
    parser.add_argument(
        "--stance-weight",
        type=float,
        default=STANCE_WEIGHT,
        help="weight of stance entropy against category closeness (0-1)",
    )
    parser.add_argument("--config-out", type=Path, help="also write the labelling config here")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR, help="dataset folder")
    parser.add_argument("--holdout", type=Path, default=None, help="holdout list (JSON)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.n < 1 or args.per_story < 1 or not 0.0 <= args.stance_weight <= 1.0:
        parser.error("--n and --per-story must be at least 1, --stance-weight within 0-1")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    paths = Paths(args.data_dir)
    try:
        holdout = Holdout.load(args.holdout)
        if args.pool:
            units, problems = file_units(read_pool(args.pool), paths, holdout)
            if problems:
                raise DataError(
                    f"refused: material of the evaluators' private test set ({holdout.source}); "
                    "nothing written:\n  " + "\n  ".join(problems)
                )
        else:
            units = corpus_units(paths, holdout)
        pool = candidates(units, paths)
        if not pool:
            raise DataError("nothing to select: every pool sentence is labelled or too short")
        tasks, summary = select(
            pool, load_model(args.model), args.n, args.per_story, args.stance_weight
        )
        write_tasks(args.out, tasks)
        if args.config_out:
            atomic_write_text(args.config_out, labelling_config())
    except DataError as exc:
        print(f"data.active: error: {exc}", file=sys.stderr)
        return exitcodes.INPUT
    except ArtifactError as exc:
        print(f"data.active: model error: {exc}", file=sys.stderr)
        return exitcodes.MODEL
    print(json.dumps({"tasks": str(args.out), **summary}))
    return exitcodes.OK


if __name__ == "__main__":
    sys.exit(main())
