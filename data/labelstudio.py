"""Label Studio both ways: sentences out as tasks with pre-annotations, finished labels in.

    python -m data.labelstudio config [--out labelling.xml]
    python -m data.labelstudio export TASKS.json [--model NAME_OR_FOLDER | --no-predictions]
                                      [--article ID ...] [--include-labelled] [--config-out XML]
    python -m data.labelstudio import EXPORT.json [--replace] [--partial] [--dry-run]

All three take `--data-dir` (default `data/`) and `--holdout`.

**config** prints (or writes) the labelling config generated from `model/schema.py`: the
sentence, the categories as a multiple choice, the stance as a single required choice, and
the whole article with the sentence marked, so an annotator reads it in context as the
guideline asks (`../shared/ANNOTATION.md`).

**export** writes Label Studio tasks (a JSON list, the format of Label Studio's import) for
the sentences of `data/raw/` that have no label yet, or of the `--article`s given; each
task carries the current model's decision as a pre-annotation (`predictions`, with
`model_version` `<backend>@<version>` and `score` = 1 - informativeness, see
`data/uncertainty.py`). Sentences repeated within a story are never exported: the builder
drops them before labelling.

**import** reads a Label Studio JSON export (Export -> JSON in the project, or
`projects.exports.as_json` in `label-studio-sdk`) and merges the finished annotations into
`data/labels/seed.jsonl` and `data/labels/corpus.jsonl`, where `python -m data.build` reads
them. Every task is checked first and nothing is written if any fails (exit 3, every
problem listed): unknown categories, stances or controls; missing or double stance; a
sentence whose text no longer matches what the splitter cuts from its article now; an
article that is not in `data/raw/` (tasks from `python -m data.active` on files outside
the corpus are matched by address once `python -m data.ingest` has added the article); two
tasks for one sentence (duplicate); annotations of one task that disagree, unless exactly one
of them is marked ground truth (conflict); a label that differs from the one already stored,
unless `--replace`. Cancelled (skipped) annotations and tasks without an annotation are
left out and counted. Files are replaced atomically (`model/fsutil.py`).

Labels imported from Label Studio say so in `labeller`: `labelstudio` (one annotation),
`labelstudio:agreed` (several, all the same) or `labelstudio:ground_truth`.
`--partial` records the articles that still have unlabelled sentences after the import in
`labels/partial.json` (`data.build.PARTIAL_FILE`), so that the builder leaves those
sentences out instead of failing: the way sentences picked by active learning enter the
data without labelling their whole articles. An article leaves that list once every
sentence is labelled.

Exit codes (`model/exitcodes.py`): 0 ok, 2 usage, 3 input (bad export, bad or refused data),
4 model (the `--model` for the pre-annotations cannot be loaded).
"""

from __future__ import annotations

import argparse
import html
import json
import logging
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import quoteattr

from data.annotate import units as label_units
from data.build import DATA_DIR, PARTIAL_FILE, Paths, article_sentences, partial_articles
from data.holdout import Holdout, norm_url
from data.records import DataError, dumps_jsonl, read_jsonl
from data.uncertainty import STANCE_WEIGHT, Informativeness, informativeness
from model import exitcodes
from model.artifact import ArtifactError
from model.fsutil import atomic_write_text
from model.schema import CATEGORIES, CATEGORY_EN, STANCE_EN, STANCES

log = logging.getLogger("data.labelstudio")

# Names of the controls in the labelling config; the importer reads results by them.
TEXT, CONTEXT, CATEGORY_CONTROL, STANCE_CONTROL = "text", "context", "categories", "stance"
LABELLER = "labelstudio"
DEFAULT_MODEL = "tfidf"


# --- the labelling config ------------------------------------------------------------------


def labelling_config() -> str:
    """The Label Studio labelling config (XML) for our schema, in schema order."""

    def choice(name: str, hint: str) -> str:
        return f"    <Choice value={quoteattr(name)} hint={quoteattr(hint)}/>"

    lines = [
        "<View>",
        '  <Header value="Sentence"/>',
        f'  <Text name="{TEXT}" value="${TEXT}"/>',
        '  <Header value="Categories: the kinds of conduct it is about (zero or more)"/>',
        f'  <Choices name="{CATEGORY_CONTROL}" toName="{TEXT}" choice="multiple">',
        *(choice(c, CATEGORY_EN[c]) for c in CATEGORIES),
        "  </Choices>",
        '  <Header value="Stance toward the neutrality of civil servants (exactly one)"/>',
        f'  <Choices name="{STANCE_CONTROL}" toName="{TEXT}" choice="single-radio" '
        'required="true">',
        *(choice(s, STANCE_EN[s]) for s in STANCES),
        "  </Choices>",
        '  <Header value="The article (the sentence is marked)"/>',
        f'  <HyperText name="{CONTEXT}" value="${CONTEXT}"/>',
        "</View>",
    ]
    return "\n".join(lines) + "\n"


# --- export --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Unit:
    """One sentence to label, with its article for context."""

    article_id: str
    position: int
    text: str
    story_id: str
    article: dict  # metadata: title, outlet, date, region, url where known
    sentences: tuple[str, ...] = field(repr=False)  # the whole article as the splitter cuts it

    @property
    def key(self) -> str:
        return f"{self.article_id}:{self.position}"


def context_html(unit: Unit) -> str:
    """The article as HTML, the sentence to label in `<mark>`."""
    meta = unit.article
    title = html.escape(str(meta.get("title") or unit.article_id))
    where = ", ".join(str(meta[k]) for k in ("outlet", "date", "region") if meta.get(k))
    body = " ".join(
        f"<mark>{html.escape(s)}</mark>" if i == unit.position else html.escape(s)
        for i, s in enumerate(unit.sentences)
    )
    head = f"<p><b>{title}</b>" + (f"<br/><small>{html.escape(where)}</small>" if where else "")
    return f"{head}</p><p>{body}</p>"


def choices_result(categories: Sequence[str], stance: str) -> list[dict]:
    """A Label Studio `result` list for one sentence's labels (as the importer reads it)."""
    result = []
    if categories:
        result.append(_choices(CATEGORY_CONTROL, list(categories)))
    result.append(_choices(STANCE_CONTROL, [stance]))
    return result


def _choices(control: str, values: list[str]) -> dict:
    return {"from_name": control, "to_name": TEXT, "type": "choices", "value": {"choices": values}}


def model_predictions(
    predictor, texts: Sequence[str], stance_weight: float = STANCE_WEIGHT
) -> tuple[list[dict], Informativeness]:
    """Pre-annotations for `texts` from a `model.predictor.Predictor`, and the uncertainty."""
    scores = predictor.scores(list(texts))
    chosen, stance = predictor.decide(scores)
    info = informativeness(scores, predictor.thresholds, stance_weight)
    version = f"{predictor.name}@{predictor.version}"
    out = []
    for i in range(len(texts)):
        cats = [c for c, on in zip(CATEGORIES, chosen[i], strict=True) if on]
        out.append(
            {
                "model_version": version,
                "score": round(1.0 - float(info.value[i]), 4),
                "result": choices_result(cats, STANCES[int(stance[i])]),
            }
        )
    return out, info


def make_task(unit: Unit, prediction: dict | None = None, extra: dict | None = None) -> dict:
    """A Label Studio task: `data` the annotator sees and the importer reads back."""
    data = {
        TEXT: unit.text,
        CONTEXT: context_html(unit),
        "article_id": unit.article_id,
        "position": unit.position,
        "sentence_id": f"{unit.article_id}-{unit.position:03d}",
        "story_id": unit.story_id,
        "title": unit.article.get("title"),
        "url": unit.article.get("url"),
    }
    data.update(extra or {})
    task: dict = {"data": data}
    if prediction is not None:
        task["predictions"] = [prediction]
    return task


def labelled_keys(paths: Paths) -> dict[str, tuple[str, dict]]:
    """Every stored label by `ARTICLE_ID:POSITION`, with the file it lives in."""
    out: dict[str, tuple[str, dict]] = {}
    for label_file in sorted(paths.labels.glob("*.jsonl")):
        for rec in read_jsonl(label_file):
            out[f"{rec['article_id']}:{rec['position']}"] = (label_file.name, rec)
    return out


def corpus_units(paths: Paths, holdout: Holdout | None) -> list[Unit]:
    """Every sentence of `raw/` that takes a label (repeats within a story left out)."""
    articles, sentences = article_sentences(paths, holdout)
    return [
        Unit(
            u["article_id"],
            u["position"],
            u["text"],
            u["story_id"],
            articles[u["article_id"]],
            tuple(sentences[u["article_id"]]),
        )
        for u in label_units(paths, holdout).values()
    ]


def export_units(
    paths: Paths,
    holdout: Holdout | None,
    articles: Sequence[str] = (),
    include_labelled: bool = False,
) -> list[Unit]:
    """The sentences to export: unlabelled ones (or all with `include_labelled`), optionally
    of the given articles only (an unknown article id is an error)."""
    units = corpus_units(paths, holdout)
    if articles:
        known = {u.article_id for u in units}
        unknown = sorted(set(articles) - known)
        if unknown:
            raise DataError(f"articles not in {paths.raw}: {unknown}")
        units = [u for u in units if u.article_id in set(articles)]
    if not include_labelled:
        done = labelled_keys(paths)
        units = [u for u in units if u.key not in done]
    return units


def build_tasks(units: Sequence[Unit], predictor=None) -> list[dict]:
    """Tasks for the units, with pre-annotations when a predictor is given."""
    if predictor is None:
        return [make_task(u) for u in units]
    preds, _ = model_predictions(predictor, [u.text for u in units])
    return [make_task(u, p) for u, p in zip(units, preds, strict=True)]


def write_tasks(path: Path, tasks: list[dict]) -> None:
    """Tasks as Label Studio imports them (a JSON list), written atomically."""
    atomic_write_text(Path(path), json.dumps(tasks, ensure_ascii=False, indent=1) + "\n")


# --- import --------------------------------------------------------------------------------


@dataclass
class ImportPlan:
    """What an import would change, worked out before anything is written."""

    files: dict[str, list[dict]]  # label file name -> its complete new records
    changed: set[str]  # the label files that differ from what is stored
    counts: dict[str, int]
    still_unlabelled: dict[str, int]  # article id -> unlabelled sentences after the import
    partial_listed: set[str]  # articles in labels/partial.json before the import
    problems: list[str]

    def uncovered(self, partial: bool) -> dict[str, int]:
        """Unlabelled sentences per article that the builder would refuse after the import."""
        if partial:
            return {}
        return {a: n for a, n in self.still_unlabelled.items() if a not in self.partial_listed}


def read_export(path: Path) -> list[dict]:
    """A Label Studio JSON export: a list of tasks, each with `data` and `annotations`."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not valid UTF-8 ({exc})") from exc
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from exc
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from exc
    if not isinstance(raw, list) or not all(
        isinstance(t, dict) and isinstance(t.get("data"), dict) for t in raw
    ):
        raise DataError(
            f"{path}: not a Label Studio JSON export (expected a list of tasks with `data`; "
            "export the project as JSON, not JSON-MIN or CSV)"
        )
    return raw


def read_annotation(annotation: dict, where: str) -> tuple[tuple[str, ...], str | None, list[str]]:
    """Categories (schema order), stance and problems of one annotation's `result`."""
    cats: list[str] = []
    stances: list[str] = []
    problems: list[str] = []
    for item in annotation.get("result") or []:
        control = item.get("from_name")
        values = (item.get("value") or {}).get("choices")
        if control not in (CATEGORY_CONTROL, STANCE_CONTROL) or not isinstance(values, list):
            problems.append(
                f"{where}: result from an unknown control {control!r} (type "
                f"{item.get('type')!r}); the project must use `labelstudio config`"
            )
            continue
        (cats if control == CATEGORY_CONTROL else stances).extend(map(str, values))
    unknown = sorted(set(cats) - set(CATEGORIES))
    if unknown:
        problems.append(f"{where}: unknown categories {unknown} (known: {', '.join(CATEGORIES)})")
    bad_stances = sorted(set(stances) - set(STANCES))
    if bad_stances:
        problems.append(f"{where}: unknown stance {bad_stances} (known: {', '.join(STANCES)})")
    stance = None
    if not stances:
        problems.append(f"{where}: missing stance (every sentence needs exactly one)")
    elif len(set(stances)) > 1:
        problems.append(f"{where}: more than one stance {sorted(set(stances))}")
    else:
        stance = stances[0]
    ordered = tuple(c for c in CATEGORIES if c in set(cats))
    return ordered, stance, problems


def _who(annotation: dict) -> str:
    who = annotation.get("completed_by")
    if isinstance(who, dict):
        who = who.get("email") or who.get("id")
    return f"#{annotation.get('id')} by user {who}"


def _final_label(task: dict, where: str) -> tuple[tuple[tuple[str, ...], str] | None, str, list]:
    """The task's label and labeller from its annotations (None when it has none)."""
    active = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
    if not active:
        return None, "", []
    read = []
    problems: list[str] = []
    for a in active:
        cats, stance, found = read_annotation(a, f"{where}, annotation {_who(a)}")
        problems += found
        read.append((a, (cats, stance)))
    if problems:
        return None, "", problems
    labels = {label for _, label in read}
    if len(labels) == 1:
        return read[0][1], LABELLER if len(read) == 1 else f"{LABELLER}:agreed", []
    truth = {label for a, label in read if a.get("ground_truth")}
    if len(truth) == 1:
        return truth.pop(), f"{LABELLER}:ground_truth", []
    shown = "; ".join(f"{_who(a)}: {list(c)} / {s}" for a, (c, s) in read)
    return (
        None,
        "",
        [
            f"{where}: conflicting annotations ({shown}); settle them in Label Studio (fix "
            "one, or mark the right one as ground truth) and export again"
        ],
    )


def plan_import(
    tasks: list[dict], paths: Paths, holdout: Holdout | None, replace: bool = False
) -> ImportPlan:
    """Check every task against the corpus and the stored labels; work out the new files."""
    articles, sentences = article_sentences(paths, holdout)
    takes_label = set(label_units(paths, holdout))
    by_url = {norm_url(m["url"]): aid for aid, m in articles.items() if m.get("url")}
    stored = labelled_keys(paths)
    problems: list[str] = []
    counts = dict.fromkeys(("new", "replaced", "unchanged", "not_annotated"), 0)
    seen: dict[str, object] = {}
    updates: dict[str, dict] = {}
    for number, task in enumerate(tasks, start=1):
        data = task["data"]
        tid = task.get("id", f"#{number}")
        aid, pos, text = data.get("article_id"), data.get("position"), data.get(TEXT)
        where = f"task {tid} ({aid}:{pos})"
        if aid not in articles and data.get("url"):
            aid = by_url.get(norm_url(str(data["url"])), aid)
        if aid not in articles:
            problems.append(
                f"{where}: article {aid!r} is not in {paths.raw} (add it with "
                "`python -m data.ingest` first; its address is matched)"
            )
            continue
        cut = sentences[aid]
        if not isinstance(pos, int) or isinstance(pos, bool) or not 0 <= pos < len(cut):
            problems.append(f"{where}: position {pos!r} is not a sentence of {aid}")
            continue
        if text != cut[pos]:
            problems.append(
                f"{where}: text no longer matches the splitter's sentence {pos} of {aid}:\n"
                f"    task:     {text!r}\n    splitter: {cut[pos]!r}"
            )
            continue
        key = f"{aid}:{pos}"
        if key not in takes_label:
            problems.append(f"{where}: a repeat within its story; such sentences take no label")
            continue
        if key in seen:
            problems.append(f"{where}: duplicate: task {seen[key]} is the same sentence")
            continue
        seen[key] = tid
        label, labeller, found = _final_label(task, where)
        problems += found
        if label is None:  # no annotation (or a refused one, listed in problems)
            counts["not_annotated"] += not found
            continue
        cats, stance = label
        old = stored.get(key)
        if old is not None and (tuple(old[1]["categories"]), old[1]["stance"]) == (cats, stance):
            counts["unchanged"] += 1
            continue
        if old is not None and not replace:
            problems.append(
                f"{where}: conflicts with the stored label in labels/{old[0]} "
                f"({old[1]['categories']} / {old[1]['stance']}; Label Studio: {list(cats)} / "
                f"{stance}); import with --replace to overwrite it"
            )
            continue
        counts["replaced" if old is not None else "new"] += 1
        source = "seed" if articles[aid].get("url") is None else "corpus"
        updates[key] = {
            "id": f"{aid}-{pos:03d}",
            "article_id": aid,
            "position": pos,
            "text": text,
            "categories": list(cats),
            "stance": stance,
            "source": source,
            "labeller": labeller,
        }
    files: dict[str, list[dict]] = defaultdict(list)
    for key, (name, rec) in stored.items():
        files[name].append(updates.pop(key, rec))
    for rec in updates.values():
        files[f"{rec['source']}.jsonl"].append(rec)
    changed = set()
    for name, records in files.items():
        records.sort(key=lambda r: (r["article_id"], r["position"]))
        path = paths.labels / name
        if not path.exists() or path.read_text(encoding="utf-8") != dumps_jsonl(records):
            changed.add(name)
    labelled = {f"{r['article_id']}:{r['position']}" for recs in files.values() for r in recs}
    missing: dict[str, int] = defaultdict(int)
    for key in takes_label - labelled:
        missing[key.rsplit(":", 1)[0]] += 1
    return ImportPlan(
        dict(files),
        changed,
        counts,
        dict(sorted(missing.items())),
        partial_articles(paths),
        problems,
    )


def apply_import(plan: ImportPlan, paths: Paths, partial: bool) -> list[str]:
    """Write the changed label files and the partial-article list; returns what it wrote."""
    written = []
    for name in sorted(plan.changed):
        atomic_write_text(paths.labels / name, dumps_jsonl(plan.files[name]))
        written.append(str(paths.labels / name))
    partial_path = paths.labels / PARTIAL_FILE
    listed = plan.partial_listed
    unlabelled = set(plan.still_unlabelled)
    wanted = (unlabelled if partial else listed) & unlabelled
    if wanted != listed:
        if wanted:
            body = {
                "why": "labelled by selection (active learning): the builder leaves their "
                "unlabelled sentences out; written by `python -m data.labelstudio import "
                "--partial`",
                "articles": sorted(wanted),
            }
            atomic_write_text(partial_path, json.dumps(body, indent=2, ensure_ascii=False) + "\n")
        else:
            partial_path.unlink()
        written.append(str(partial_path))
    return written


# --- command line --------------------------------------------------------------------------


def load_model(spec: str):
    """The predictor for pre-annotations (imported here: `config` must not need a model)."""
    from model.registry import load_predictor

    try:
        return load_predictor(spec)
    except ImportError as exc:
        raise ArtifactError(f"{spec}: cannot load its backend ({exc})") from exc


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m data.labelstudio", description=__doc__.splitlines()[0]
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", type=Path, default=DATA_DIR, help="dataset folder")
    common.add_argument("--holdout", type=Path, default=None, help="holdout list (JSON)")
    sub = parser.add_subparsers(dest="verb", required=True)
    c = sub.add_parser("config", parents=[common], help="print the labelling config (XML)")
    c.add_argument("--out", type=Path, help="write it to this file instead")
    e = sub.add_parser(
        "export", parents=[common], help="write tasks for unlabelled sentences (JSON)"
    )
    e.add_argument("out", type=Path, help="tasks file to write (JSON list)")
    e.add_argument(
        "--model", default=DEFAULT_MODEL, help="model for the pre-annotations (default tfidf)"
    )
    e.add_argument("--no-predictions", action="store_true", help="tasks without pre-annotations")
    e.add_argument("--article", action="append", default=[], help="only this article (repeatable)")
    e.add_argument(
        "--include-labelled", action="store_true", help="also sentences already labelled (review)"
    )
    e.add_argument("--config-out", type=Path, help="also write the labelling config here")
    i = sub.add_parser("import", parents=[common], help="merge a Label Studio JSON export")
    i.add_argument("export", type=Path, help="Label Studio JSON export")
    i.add_argument("--replace", action="store_true", help="overwrite stored labels that differ")
    i.add_argument(
        "--partial",
        action="store_true",
        help="leave the still unlabelled sentences of the articles out of the splits",
    )
    i.add_argument("--dry-run", action="store_true", help="check and report; write nothing")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    paths = Paths(args.data_dir)
    try:
        if args.verb == "config":
            if args.out:
                atomic_write_text(args.out, labelling_config())
                print(args.out)
            else:
                print(labelling_config(), end="")
            return exitcodes.OK
        holdout = Holdout.load(args.holdout)
        if args.verb == "export":
            units = export_units(paths, holdout, args.article, args.include_labelled)
            predictor = None if args.no_predictions or not units else load_model(args.model)
            tasks = build_tasks(units, predictor)
            write_tasks(args.out, tasks)
            if args.config_out:
                atomic_write_text(args.config_out, labelling_config())
            articles = len({u.article_id for u in units})
            print(f"{args.out}: {len(tasks)} task(s) from {articles} article(s)")
            return exitcodes.OK
        plan = plan_import(read_export(args.export), paths, holdout, replace=args.replace)
        if plan.problems:
            shown = "\n  ".join(plan.problems[:200])
            more = len(plan.problems) - 200
            raise DataError(
                f"{args.export}: {len(plan.problems)} problem(s), nothing written:\n  {shown}"
                + (f"\n  ... and {more} more" if more > 0 else "")
            )
        written = [] if args.dry_run else apply_import(plan, paths, args.partial)
    except DataError as exc:
        print(f"data.labelstudio: error: {exc}", file=sys.stderr)
        return exitcodes.INPUT
    except ArtifactError as exc:
        print(f"data.labelstudio: model error: {exc}", file=sys.stderr)
        return exitcodes.MODEL
    uncovered = plan.uncovered(args.partial)
    if uncovered:
        log.warning(
            "%d sentence(s) in %d article(s) still have no label; data.build refuses them "
            "until they are labelled (or imported with --partial), first: %s",
            sum(uncovered.values()),
            len(uncovered),
            ", ".join(list(uncovered)[:5]),
        )
    summary = {
        **plan.counts,
        "still_unlabelled": sum(plan.still_unlabelled.values()),
        "refused_by_build": sum(uncovered.values()),
        "dry_run": args.dry_run,
        "written": written,
    }
    print(json.dumps(summary, ensure_ascii=False))
    return exitcodes.OK


if __name__ == "__main__":
    sys.exit(main())
