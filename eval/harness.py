"""Evaluate any number of model artifacts on one labelled JSONL file.

The harness only talks to models through `model.registry.load_predictor` and the
`Predictor` interface (`scores`, `decide`, `predict`, `meta`), so a new backend is evaluated
without touching this file. It never tunes anything: thresholds come from each artifact's
meta.json (tuned on dev by the trainer), and the model list is whatever the caller passes.

Order of work, each step refusing early with the exit code the CLI documents:
1. read and validate the data file (line-numbered problems; `DataError` -> exit 3);
2. verify every model folder's manifest and meta.json (`ArtifactError` -> exit 4);
3. refuse a file that shares sentences with a model's train/dev data (`OverlapError`,
   exit 3) unless the caller allows it, in which case the result carries a warning;
4. load the models, score, decide; compute metrics, bootstrap intervals, paired tests
   and calibration;
5. optionally time each model (kept under one key so everything else is deterministic).

The result is a plain dict (`RunResult.metrics`, written as metrics.json by
`eval.report`) plus the per-sentence error records.
"""

from __future__ import annotations

import logging
import os
import platform
import re
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from data.records import DataError, read_jsonl_numbered, sentence_hash
from data.validate import DEFAULT_SPLITS_DIR, records_problems
from eval.stats import bootstrap_ci, mcnemar, paired_bootstrap
from eval.timing import TimingSettings, measure
from model.artifact import ArtifactError, library_versions, read_meta, read_seen
from model.fsutil import sha256_file
from model.predictor import Predictor, Scores
from model.registry import load_predictor, resolve_model
from model.schema import CATEGORIES, SCHEMA_VERSION, STANCES
from model.scorer import (
    calibration_bins,
    category_counts,
    label_arrays,
    macro_f1_from_counts,
    macro_f1_over_supported,
    micro_f1_from_counts,
    multilabel_report,
    stance_counts,
    stance_report,
)

log = logging.getLogger("eval.harness")

METRICS_SCHEMA_VERSION = 1
DEFAULT_DATA = DEFAULT_SPLITS_DIR / "test.jsonl"
CONFIDENCE = 0.95
ALPHA = 0.05
ECE_BINS = 10
SCORE_CHUNK = 256
# Below this many sentences the report says plainly that the figures are rough.
SMALL_TEST_SET = 500
SHOWN_OVERLAP = 3


class OverlapError(DataError):
    """The evaluation file shares sentences with what a model was trained or tuned on."""


@dataclass
class EvalData:
    """A validated labelled file and its label arrays."""

    path: Path
    sha256: str
    records: list[dict]
    texts: list[str]
    y_cat: np.ndarray  # (n, categories) 0/1
    y_stance: np.ndarray  # (n,) stance index


@dataclass
class ModelRef:
    """A verified model folder and its report label, before its weights are loaded."""

    label: str
    path: Path
    meta: dict


@dataclass
class LoadedModel:
    """One model of the run: its label in the report, folder and predictor."""

    label: str
    path: Path
    predictor: Predictor


@dataclass
class RunResult:
    """What `eval.report.write_report` needs: the metrics.json dict and the error rows."""

    metrics: dict
    errors: list[dict]


# --- data ----------------------------------------------------------------------------------


def load_eval_data(path: Path) -> EvalData:
    """Read a labelled JSONL file in the dataset format; refuse it with every problem listed.

    Problems name the file and line (blank lines count, as in an editor), using the same
    per-record check as `python -m data.validate`, plus duplicate ids (they would make the
    errors file ambiguous).
    """
    path = Path(path)
    numbered = read_jsonl_numbered(path)  # DataError with the line for unparsable lines
    if not numbered:
        raise DataError(f"{path}: no records to evaluate on")
    records = [rec for _, rec in numbered]
    problems = records_problems([(f"{path}:{number}", rec) for number, rec in numbered])
    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise DataError(f"{path}: {len(problems)} problem(s):\n  {shown}{more}")
    texts, y_cat, y_stance = label_arrays(records)
    return EvalData(path, sha256_file(path), records, texts, y_cat, y_stance)


def data_summary(data: EvalData) -> dict:
    """Provenance and label counts of the evaluation file (metrics.json `run.data`)."""
    return {
        "path": str(data.path.resolve()),
        "sha256": data.sha256,
        "sentences": len(data.records),
        "labels": {
            "categories": {c: int(data.y_cat[:, j].sum()) for j, c in enumerate(CATEGORIES)},
            "no_category": int((data.y_cat.sum(axis=1) == 0).sum()),
            "stance": {s: int((data.y_stance == k).sum()) for k, s in enumerate(STANCES)},
        },
    }


# --- models --------------------------------------------------------------------------------


def encoder_name(meta: dict) -> str | None:
    """The pretrained encoder a transformer artifact names (string or dict form)."""
    enc = meta.get("encoder")
    if enc is None:
        return None
    if isinstance(enc, dict):
        for key in ("name", "id", "model", "source", "path"):
            if isinstance(enc.get(key), str) and enc[key]:
                return enc[key]
        return None
    return str(enc)


def model_labels(metas: list[dict]) -> list[str]:
    """Report labels: `<backend>` or `<backend>:<encoder>`, made unique within the run.

    Models sharing a label get `@<version>` when their versions differ (two TF-IDF models
    trained with other settings) and `#1`, `#2`, ... otherwise (the same model twice).
    """
    base = []
    for meta in metas:
        enc = encoder_name(meta)
        base.append(f"{meta.get('backend')}:{enc}" if enc else str(meta.get("backend")))
    labels = list(base)
    for name in dict.fromkeys(base):
        idx = [i for i, b in enumerate(base) if b == name]
        if len(idx) < 2:
            continue
        versions = [str(metas[i].get("version")) for i in idx]
        unique_versions = len(set(versions)) == len(versions)
        for k, i in enumerate(idx, start=1):
            labels[i] = f"{name}@{versions[k - 1]}" if unique_versions else f"{name}#{k}"
    # Last guard (an encoder name containing "@" or "#"): number any remaining clash.
    counts: dict[str, int] = {}
    for i, label in enumerate(labels):
        counts[label] = counts.get(label, 0) + 1
        if counts[label] > 1:
            labels[i] = f"{label}#{counts[label]}"
    return labels


def open_models(specs: list[str]) -> list[ModelRef]:
    """Resolve every model and verify its manifest and meta.json, and label it.

    No weights are loaded yet, so a missing or tampered folder and an overlap refusal come
    before the slow part (a transformer load can take many seconds).
    """
    paths = [resolve_model(spec) for spec in specs]
    metas = [read_meta(path) for path in paths]
    return [
        ModelRef(label, path, meta)
        for label, path, meta in zip(model_labels(metas), paths, metas, strict=True)
    ]


def load_models(refs: list[ModelRef]) -> list[LoadedModel]:
    """Load every model through the registry (which verifies the manifest again)."""
    loaded = []
    for ref in refs:
        log.info("loading model %s (%s)", ref.label, ref.path)
        try:
            predictor = load_predictor(ref.path)
        except ImportError as exc:  # a backend whose libraries are missing here
            raise ArtifactError(f"{ref.path}: cannot load its backend ({exc})") from exc
        loaded.append(LoadedModel(ref.label, ref.path, predictor))
    return loaded


def folder_size(path: Path) -> int:
    """Bytes of every file in a model folder (what one would copy to deploy it)."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def parameter_count(meta: dict) -> int | None:
    """Parameters if the artifact records them (the transformer's `meta["parameters"]`)."""
    value = meta.get("parameters")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# --- overlap -------------------------------------------------------------------------------


MIN_OVERLAP_WORDS = 3


def check_overlap(data: EvalData, models: list[ModelRef], allow: bool) -> dict:
    """Compare the file's sentence hashes with each model's train+dev hashes.

    Raises `OverlapError` naming the count and a few sentences, unless `allow`; returns the
    `run.overlap` block of metrics.json either way. Fragments shorter than
    `MIN_OVERLAP_WORDS` words (list numbers such as "1.") recur in unrelated articles and
    identify nothing, so they are not counted.
    """
    hashes = [
        sentence_hash(t) if len(re.findall(r"\w+", t)) >= MIN_OVERLAP_WORDS else None
        for t in data.texts
    ]
    by_model: dict[str, dict] = {}
    unchecked: list[str] = []
    for model in models:
        seen = read_seen(model.path)
        if not seen:
            unchecked.append(model.label)
            continue
        hits = [i for i, h in enumerate(hashes) if h is not None and h in seen]
        by_model[model.label] = {
            "sentences": len(hits),
            "ids": [data.records[i]["id"] for i in hits],
        }
    overlapping = {label: info for label, info in by_model.items() if info["sentences"]}
    if overlapping and not allow:
        parts = []
        for model in models:
            info = overlapping.get(model.label)
            if not info:
                continue
            wanted = set(info["ids"][:SHOWN_OVERLAP])
            examples = [
                t for r, t in zip(data.records, data.texts, strict=True) if r["id"] in wanted
            ]
            shown = "\n".join(f"    - {_clip(t, 100)!r}" for t in examples)
            parts.append(
                f"  model {model.label} ({model.path}) was trained or tuned on "
                f"{info['sentences']} of the {len(hashes)} sentences, e.g.:\n{shown}"
            )
        raise OverlapError(
            f"{data.path}: overlaps the training data (by sentence hash):\n"
            + "\n".join(parts)
            + "\nScores on sentences a model has seen overstate its quality. Evaluate on a "
            "held-out file, or pass --allow-overlap to go on (the report will carry a warning)."
        )
    return {"allowed": allow, "by_model": by_model, "unchecked": unchecked}


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- scoring and metrics -------------------------------------------------------------------


def score(model: LoadedModel, texts: list[str]) -> Scores:
    """Scores for all sentences, in chunks so progress shows and memory stays bounded."""
    cats, stances = [], []
    for start in range(0, len(texts), SCORE_CHUNK):
        chunk = model.predictor.scores(texts[start : start + SCORE_CHUNK])
        cats.append(chunk.categories)
        stances.append(chunk.stance)
        log.info("%s: scored %d/%d", model.label, min(start + SCORE_CHUNK, len(texts)), len(texts))
    return Scores(np.concatenate(cats), np.concatenate(stances))


@dataclass
class _Outcome:
    """One model's decisions and the per-sentence counts the statistics need."""

    scores: Scores
    cat_pred: np.ndarray
    stance_pred: np.ndarray
    cat_counts: np.ndarray  # (n, 3, categories)
    stance_counts: np.ndarray  # (n, 3, stances)
    exact: np.ndarray  # (n,) all categories right
    stance_ok: np.ndarray  # (n,) stance right


def _outcome(model: LoadedModel, data: EvalData) -> _Outcome:
    scores = score(model, data.texts)
    cat_pred, stance_pred = model.predictor.decide(scores)
    cat_pred = np.asarray(cat_pred, dtype=bool)
    stance_pred = np.asarray(stance_pred, dtype=int)
    return _Outcome(
        scores=scores,
        cat_pred=cat_pred,
        stance_pred=stance_pred,
        cat_counts=category_counts(data.y_cat, cat_pred),
        stance_counts=stance_counts(data.y_stance, stance_pred),
        exact=(data.y_cat.astype(bool) == cat_pred).all(axis=1),
        stance_ok=data.y_stance == stance_pred,
    )


def _fraction(sums: np.ndarray) -> np.ndarray:
    """Share of hits from summed [hit, 1] columns (a resampled accuracy)."""
    return sums[:, 0] / sums[:, 1]


def _hits(flags: np.ndarray) -> np.ndarray:
    return np.stack([flags.astype(np.float64), np.ones(len(flags))], axis=1)


def headline_intervals(out: _Outcome, n_resamples: int, seed: int) -> dict:
    """95% bootstrap intervals of the headline figures (same resamples for every model)."""

    def ci(per_item: np.ndarray, statistic) -> dict:
        return bootstrap_ci(per_item, statistic, n_resamples, seed, CONFIDENCE)

    return {
        "category_micro_f1": ci(out.cat_counts, micro_f1_from_counts),
        "category_macro_f1": ci(out.cat_counts, macro_f1_from_counts),
        "subset_accuracy": ci(_hits(out.exact), _fraction),
        "stance_accuracy": ci(_hits(out.stance_ok), _fraction),
        "stance_macro_f1": ci(out.stance_counts, macro_f1_from_counts),
    }


def calibration(out: _Outcome, data: EvalData) -> dict:
    """ECE and reliability bins: category probabilities vs gold, stance confidence vs hit.

    Categories: every (sentence, category) probability is one binary forecast, compared
    with whether the gold data has that category. Stance: the top stance probability is
    the model's confidence, compared with whether that stance is right.
    """
    cat_ece, cat_bins = calibration_bins(out.scores.categories, data.y_cat, ECE_BINS)
    st_ece, st_bins = calibration_bins(out.scores.stance.max(axis=1), out.stance_ok, ECE_BINS)
    return {
        "bins": ECE_BINS,
        "category_ece": cat_ece,
        "stance_ece": st_ece,
        "category_reliability": cat_bins,
        "stance_reliability": st_bins,
    }


def _with_supported(report: dict) -> dict:
    return {**report, "macro_f1_supported": macro_f1_over_supported(report)}


def _own_test_split(meta: dict, data: EvalData) -> bool | None:
    """Whether this file is byte for byte the test split recorded in the model's meta."""
    files = (meta.get("training_data") or {}).get("files") or {}
    return data.sha256 == files["test"] if "test" in files else None


def model_block(model: LoadedModel, data: EvalData, out: _Outcome, seed: int, boot: int) -> dict:
    """metrics.json `models.<label>`: provenance, metrics, intervals, calibration."""
    meta = model.predictor.meta
    return {
        "backend": model.predictor.name,
        "version": model.predictor.version,
        "encoder": encoder_name(meta),
        "path": str(Path(model.path).resolve()),
        "size_bytes": folder_size(model.path),
        "parameters": parameter_count(meta),
        "seed": meta.get("seed"),
        "created": meta.get("created"),
        "training_data_sha256": (meta.get("training_data") or {}).get("sha256"),
        "data_is_its_test_split": _own_test_split(meta, data),
        "thresholds": {
            c: float(t) for c, t in zip(CATEGORIES, model.predictor.thresholds, strict=True)
        },
        "categories": _with_supported(multilabel_report(data.y_cat, out.cat_pred)),
        "stance": _with_supported(stance_report(data.y_stance, out.stance_pred)),
        "ci95": headline_intervals(out, boot, seed),
        "calibration": calibration(out, data),
    }


def _diff(a: np.ndarray, b: np.ndarray, statistic, boot: int, seed: int) -> dict:
    pb = paired_bootstrap(a, b, statistic, boot, seed, CONFIDENCE)
    return {
        "a": pb["a"],
        "b": pb["b"],
        "diff": pb["diff"],
        "ci95": [pb["low"], pb["high"]],
        "p_value": pb["p_value"],
        "significant": pb["p_value"] < ALPHA,
    }


def compare(la: str, oa: _Outcome, lb: str, ob: _Outcome, boot: int, seed: int) -> dict:
    """Is a better than b? Paired bootstrap for F1 figures, McNemar for per-sentence hits."""
    micro = _diff(oa.cat_counts, ob.cat_counts, micro_f1_from_counts, boot, seed)
    stance_mc = mcnemar(oa.stance_ok, ob.stance_ok)
    exact_mc = mcnemar(oa.exact, ob.exact)
    return {
        "a": la,
        "b": lb,
        "category_micro_f1_diff": micro["diff"],
        "ci95": micro["ci95"],
        "p_value": micro["p_value"],
        "significant": micro["significant"],
        "category_macro_f1": _diff(oa.cat_counts, ob.cat_counts, macro_f1_from_counts, boot, seed),
        "stance_macro_f1": _diff(
            oa.stance_counts, ob.stance_counts, macro_f1_from_counts, boot, seed
        ),
        "stance_mcnemar": {**stance_mc, "significant": stance_mc["p_value"] < ALPHA},
        "exact_match_mcnemar": {**exact_mc, "significant": exact_mc["p_value"] < ALPHA},
    }


# --- errors file ---------------------------------------------------------------------------


def error_rows(data: EvalData, models: list[LoadedModel], outs: list[_Outcome]) -> list[dict]:
    """One row per sentence some model got wrong or on which the models disagree."""
    rows = []
    for i, rec in enumerate(data.records):
        gold_cats = [c for j, c in enumerate(CATEGORIES) if data.y_cat[i, j]]
        gold_stance = STANCES[int(data.y_stance[i])]
        per_model, kinds = {}, set()
        decisions = set()
        for model, out in zip(models, outs, strict=True):
            cats = [c for j, c in enumerate(CATEGORIES) if out.cat_pred[i, j]]
            stance = STANCES[int(out.stance_pred[i])]
            decisions.add((tuple(cats), stance))
            missed = [c for c in gold_cats if c not in cats]
            spurious = [c for c in cats if c not in gold_cats]
            if missed or spurious:
                kinds.add("category_error")
            if stance != gold_stance:
                kinds.add("stance_error")
            top = np.argsort(-out.scores.categories[i], kind="stable")[:3]
            per_model[model.label] = {
                "categories": cats,
                "stance": stance,
                "missed": missed,
                "spurious": spurious,
                "stance_correct": stance == gold_stance,
                "top_category_scores": {
                    CATEGORIES[j]: round(float(out.scores.categories[i, j]), 4) for j in top
                },
                "stance_probs": {
                    s: round(float(p), 4)
                    for s, p in zip(STANCES, out.scores.stance[i], strict=True)
                },
            }
        if len(decisions) > 1:
            kinds.add("disagreement")
        if not kinds:
            continue
        rows.append(
            {
                "id": rec["id"],
                "text": rec["text"],
                "gold": {"categories": gold_cats, "stance": gold_stance},
                "kinds": sorted(kinds),
                "wrong": [
                    label
                    for label, p in per_model.items()
                    if p["missed"] or p["spurious"] or not p["stance_correct"]
                ],
                "models": per_model,
            }
        )
    return rows


# --- provenance and warnings ---------------------------------------------------------------


def _cpu_name() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def machine_info() -> dict:
    """Where the run (and its timing) happened."""
    info: dict = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }
    torch = sys.modules.get("torch")  # only if a backend loaded it; never imported here
    if torch is not None:
        info["torch_threads"] = torch.get_num_threads()
    return info


def build_warnings(data: EvalData, metrics: dict) -> list[str]:
    """Plain-language caveats an evaluator must read next to the numbers."""
    warnings = []
    overlap = metrics["run"]["overlap"]
    for label, info in overlap["by_model"].items():
        if info["sentences"]:
            warnings.append(
                f"OVERLAP: {info['sentences']} of {len(data.records)} sentences in this file "
                f"were used to train or tune {label} (allowed with --allow-overlap). Its "
                "scores here overstate how it does on unseen text."
            )
    for label in overlap["unchecked"]:
        warnings.append(
            f"{label}: the artifact has no record of its training sentences, so overlap "
            "with this file could not be checked."
        )
    counts = metrics["run"]["data"]["labels"]
    absent_c = [c for c, k in counts["categories"].items() if k == 0]
    absent_s = [s for s, k in counts["stance"].items() if k == 0]
    if absent_c or absent_s:
        names = ", ".join([*absent_c, *(f"stance {s}" for s in absent_s)])
        warnings.append(
            f"No gold sentence in this file for: {names}. F1 of such a label is 0 by "
            "convention for every model, which pulls macro-F1 down; the tables also give "
            "macro-F1 over the labels present."
        )
    n = len(data.records)
    if n < SMALL_TEST_SET:
        warnings.append(
            f"Small test set: {n} sentences. One sentence moves accuracy by "
            f"{100 / n:.1f} points and several labels have only a few examples, so the "
            "confidence intervals are wide; read differences through them."
        )
    for label, block in metrics["models"].items():
        if block["data_is_its_test_split"] is False:
            warnings.append(
                f"{label}: this file is not the test split recorded in the model's training "
                "data; check that it was held out from that model's training."
            )
    trained_on = {b["training_data_sha256"] for b in metrics["models"].values()}
    if len(trained_on) > 1:
        warnings.append(
            "The models were trained on different data versions (training_data_sha256 "
            "differs); the comparison is fair on this file but not a like-for-like training."
        )
    return warnings


def _threshold_notes(models: list[LoadedModel]) -> list[str]:
    notes = []
    for model in models:
        source = model.predictor.meta.get("threshold_source") or {}
        untuned = [c for c, how in source.items() if str(how).startswith("default")]
        if untuned:
            notes.append(
                f"{model.label}: thresholds for {', '.join(untuned)} were not tuned (no dev "
                "example) and stay at 0.5."
            )
    return notes


# --- the run -------------------------------------------------------------------------------


def evaluate(
    model_specs: list[str],
    data_path: Path = DEFAULT_DATA,
    *,
    seed: int = 13,
    n_bootstrap: int = 1000,
    allow_overlap: bool = False,
    timing: TimingSettings | None = None,
) -> RunResult:
    """Evaluate the models on the file; `timing=None` skips speed measurement."""
    if not model_specs:
        raise ValueError("no model to evaluate")
    data = load_eval_data(data_path)
    log.info("data: %s (%d sentences)", data.path, len(data.records))
    refs = open_models(model_specs)
    overlap = check_overlap(data, refs, allow_overlap)
    models = load_models(refs)
    outs = [_outcome(m, data) for m in models]
    log.info("bootstrap: %d resamples per figure (seed %d)", n_bootstrap, seed)
    blocks = {
        m.label: model_block(m, data, o, seed, n_bootstrap)
        for m, o in zip(models, outs, strict=True)
    }
    comparisons = [
        compare(models[i].label, outs[i], models[j].label, outs[j], n_bootstrap, seed)
        for i in range(len(models))
        for j in range(i + 1, len(models))
    ]
    metrics: dict = {
        "schema_version": METRICS_SCHEMA_VERSION,
        "run": {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "seed": seed,
            "label_schema_version": SCHEMA_VERSION,
            "bootstrap": {
                "resamples": n_bootstrap,
                "confidence": CONFIDENCE,
                "method": "percentile; sentences resampled with replacement; the same "
                "resamples for every model",
            },
            "alpha": ALPHA,
            "machine": machine_info(),
            "libraries": library_versions(),
            "data": data_summary(data),
            "overlap": overlap,
            "thresholds": "from each model's meta.json (tuned on dev); nothing is tuned on "
            "this file",
        },
        "models": blocks,
        "comparisons": comparisons,
        "timing": {"enabled": timing is not None},
        "warnings": [],
    }
    metrics["warnings"] = build_warnings(data, metrics) + _threshold_notes(models)
    if timing is not None:
        metrics["timing"]["settings"] = timing.as_dict()
        metrics["timing"]["models"] = {}
        for m in models:
            log.info("timing %s", m.label)
            metrics["timing"]["models"][m.label] = measure(m.predictor, data.texts, timing)
    # After timing: a backend may have loaded torch only while predicting.
    metrics["run"]["machine"] = machine_info()
    return RunResult(metrics=metrics, errors=error_rows(data, models, outs))
