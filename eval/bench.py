"""Speed of the prediction path: cold start and throughput, measured the way users pay them.

    python -m eval.bench [--model tfidf] [--model indobert] [--sentences N]
                         [--transformer-sentences N] [--runs R] [--json]

For a TF-IDF model: the cold start of `predict.py` (median of R subprocess runs, wall clock
from spawn to the first byte on stdout, so interpreter start, imports, manifest check and
unpickling all count), the throughput of the loaded `Predictor` as scikit-learn computes it
and through `model.inference.Engine` (what `predict.py` runs), and of `predict.py` itself on
a JSON Lines file of N sentences (spawn to exit, with and without worker processes).

For a transformer model (its meta has "encoder"): our backend's throughput through the
`Engine` against a plain `transformers.pipeline("text-classification")` built from the SAME
encoder weights and stance head (copied into an `AutoModelForSequenceClassification` of the
encoder's type, saved to a temporary folder), on the same sentences; both figures and the
ratio. The pipeline runs as a plain user would call it (default batch size), and also with
`batch_size=32` for context.

Sentences are the dev and test sentences, repeated to the requested count, so the figures
describe our own kind of text. This is a benchmark, not a test: it asserts nothing.
Exit codes: 0 ok, 2 usage, 4 a model folder missing or unloadable.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from data.validate import DEFAULT_SPLITS_DIR, load_splits
from model import exitcodes, tfidf
from model.artifact import ArtifactError
from model.inference import Document, Engine
from model.paths import REPO_ROOT
from model.predictor import Predictor
from model.registry import load_predictor, resolve_model
from model.schema import STANCES

PREDICT = REPO_ROOT / "predict.py"
PROBE_SENTENCE = "Bawaslu menemukan camat menghadiri deklarasi pasangan calon bupati."


def bench_sentences(n: int, splits_dir: Path = DEFAULT_SPLITS_DIR) -> list[str]:
    """Dev + test sentences, repeated (in order) to exactly `n`."""
    splits = load_splits(splits_dir)
    base = [r["text"] for s in ("dev", "test") for r in splits[s]]
    if not base:
        raise SystemExit(f"bench: no dev/test sentences in {splits_dir}")
    return [base[i % len(base)] for i in range(n)]


def machine() -> dict:
    """What the figures were measured on."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    info = {
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable,
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        info["torch_threads"] = None
    return info


def _rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


# --------------------------------------------------------------------------- TF-IDF


def cold_start(folder: Path, runs: int) -> list[float]:
    """Seconds from spawning `predict.py` to its first byte of output, per run."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, str(PREDICT), "--model", str(folder), PROBE_SENTENCE],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        first = proc.stdout.read(1)
        elapsed = time.perf_counter() - started
        rest = proc.stdout.read()
        err = proc.stderr.read()
        if proc.wait() != 0 or not first:
            raise RuntimeError(f"predict.py failed: {err.decode(errors='replace')}")
        del rest
        times.append(elapsed)
    return times


def predict_cli_rate(folder: Path, sentences: list[str], jobs: int) -> float:
    """Sentences/s of `predict.py --file big.jsonl`, spawn to exit, output to a file."""
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "big.jsonl", Path(tmp) / "out.jsonl"
        src.write_text(
            "".join(
                json.dumps({"id": i, "text": s}, ensure_ascii=False) + "\n"
                for i, s in enumerate(sentences)
            ),
            encoding="utf-8",
        )
        cmd = [sys.executable, str(PREDICT), "--model", str(folder), "--file", str(src)]
        cmd += ["--jobs", str(jobs)]
        with open(dst, "wb") as out:
            started = time.perf_counter()
            proc = subprocess.run(cmd, stdout=out, stderr=subprocess.PIPE, check=False)
            elapsed = time.perf_counter() - started
        if proc.returncode != 0:
            raise RuntimeError(f"predict.py failed: {proc.stderr.decode(errors='replace')}")
        with open(dst, "rb") as fh:
            lines = sum(1 for _ in fh)
        if lines < len(sentences):
            raise RuntimeError(f"predict.py wrote {lines} records for {len(sentences)} lines")
    return _rate(len(sentences), elapsed)


def bench_generic(folder: Path, sentences: list[str], runs: int) -> dict:
    """Any other backend: throughput through the engine and predict.py's cold start."""
    engine = Engine(load_predictor(folder))
    docs = [Document(id=i, text=s) for i, s in enumerate(sentences)]
    started = time.perf_counter()
    for _ in engine.run(docs):
        pass
    rate = _rate(len(sentences), time.perf_counter() - started)
    starts = cold_start(folder, runs)
    return {
        "model": engine.model,
        "cold_start_s": statistics.median(starts),
        "cold_start_runs_s": [round(t, 3) for t in starts],
        "engine_sentences_per_s": rate,
    }


def bench_tfidf(folder: Path, sentences: list[str], runs: int) -> dict:
    """The generic figures, plus scikit-learn's own featuriser and predict.py end to end."""
    out = bench_generic(folder, sentences, runs)
    predictor = load_predictor(folder)
    plain_backend = tfidf.load_backend(predictor.path, predictor.meta, fast=False)
    plain_predictor = Predictor(backend=plain_backend, meta=predictor.meta, path=predictor.path)
    batch = Engine(predictor).batch_sentences
    started = time.perf_counter()
    for i in range(0, len(sentences), batch):
        plain_predictor.predict(sentences[i : i + batch])
    out["predictor_plain_sentences_per_s"] = _rate(len(sentences), time.perf_counter() - started)
    out["engine_accelerated"] = predictor.backend.features is not plain_backend.features
    out["predict_cli_sentences_per_s"] = predict_cli_rate(folder, sentences, jobs=0)
    out["predict_cli_one_process_sentences_per_s"] = predict_cli_rate(folder, sentences, jobs=1)
    return out


# --------------------------------------------------------------------------- transformer


def _walk(obj, found: dict, seen: set, depth: int = 0) -> None:
    """Find the encoder, tokenizer and linear heads anywhere in a backend object."""
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    if id(obj) in seen or depth > 4:
        return
    seen.add(id(obj))
    if isinstance(obj, PreTrainedModel):
        found.setdefault("encoder", obj)
        return
    if isinstance(obj, PreTrainedTokenizerBase):
        found.setdefault("tokenizer", obj)
        return
    if isinstance(obj, torch.nn.Linear):
        found.setdefault("linears", []).append(obj)
        return
    if isinstance(obj, torch.nn.Module):
        for child in obj.children():
            _walk(child, found, seen, depth + 1)
    elif isinstance(obj, dict):
        for value in obj.values():
            _walk(value, found, seen, depth + 1)
    elif isinstance(obj, list | tuple):
        for value in obj:
            _walk(value, found, seen, depth + 1)
    if hasattr(obj, "__dict__") and not isinstance(obj, type):
        for value in vars(obj).values():
            _walk(value, found, seen, depth + 1)


def build_plain_pipeline(predictor, folder: Path):
    """A plain text-classification pipeline with our encoder weights and stance head."""
    import torch
    from transformers import AutoModelForSequenceClassification, pipeline

    found: dict = {}
    _walk(predictor.backend, found, set())
    encoder, tokenizer = found.get("encoder"), found.get("tokenizer")
    heads = [m for m in found.get("linears", []) if m.out_features == len(STANCES)]
    if encoder is None or tokenizer is None or len(heads) != 1:
        raise RuntimeError(
            "cannot find one encoder (PreTrainedModel), tokenizer and 3-way stance head in "
            f"the backend (found encoder={encoder is not None}, tokenizer="
            f"{tokenizer is not None}, stance heads={len(heads)})"
        )
    head = heads[0]
    config = encoder.config.__class__.from_dict(encoder.config.to_dict())
    config.num_labels = len(STANCES)
    config.id2label = dict(enumerate(STANCES))
    config.label2id = {s: i for i, s in enumerate(STANCES)}
    model = AutoModelForSequenceClassification.from_config(config)
    base = getattr(model, model.base_model_prefix)
    state = {k: v.float() for k, v in encoder.state_dict().items()}
    missing, _unexpected = base.load_state_dict(state, strict=False)
    real_missing = [k for k in missing if "pooler" not in k]
    if real_missing:
        raise RuntimeError(f"encoder weights do not fit {type(model).__name__}: {real_missing[:5]}")
    targets = [
        m
        for m in model.modules()
        if isinstance(m, torch.nn.Linear)
        and m.out_features == len(STANCES)
        and m.in_features == head.in_features
    ]
    if not targets:
        raise RuntimeError("the sequence-classification model has no head shaped like ours")
    with torch.no_grad():
        targets[-1].weight.copy_(head.weight)
        targets[-1].bias.copy_(head.bias)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return pipeline("text-classification", model=str(folder), tokenizer=str(folder), device=-1)


def bench_transformer(folder: Path, sentences: list[str]) -> dict:
    predictor = load_predictor(folder)
    engine = Engine(predictor)
    docs = [Document(id=i, text=s) for i, s in enumerate(sentences)]
    engine.score_batch(docs[:16])  # warm-up: first-call allocations are not throughput
    started = time.perf_counter()
    for _ in engine.run(docs):
        pass
    ours = _rate(len(sentences), time.perf_counter() - started)
    out = {"model": engine.model, "ours_sentences_per_s": ours}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            pipe = build_plain_pipeline(predictor, Path(tmp))
        except Exception as exc:
            out["plain_pipeline_error"] = str(exc)
            return out
        max_length = getattr(pipe.tokenizer, "model_max_length", 512)
        kwargs = {"truncation": True, "max_length": min(int(max_length), 512)}
        pipe(sentences[:8], **kwargs)  # warm-up
        started = time.perf_counter()
        pipe(sentences, **kwargs)
        plain = _rate(len(sentences), time.perf_counter() - started)
        started = time.perf_counter()
        pipe(sentences, batch_size=32, **kwargs)
        plain32 = _rate(len(sentences), time.perf_counter() - started)
    out.update(
        {
            "plain_pipeline_sentences_per_s": plain,
            "plain_pipeline_batch32_sentences_per_s": plain32,
            "ratio_vs_plain": ours / plain,
            "ratio_vs_plain_batch32": ours / plain32,
        }
    )
    return out


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark predict.py and the backends.")
    parser.add_argument(
        "--model", action="append", help="backend name or folder (repeatable; default tfidf)"
    )
    parser.add_argument("--sentences", type=int, default=100_000, help="TF-IDF sentences")
    parser.add_argument("--transformer-sentences", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5, help="cold-start runs (median)")
    parser.add_argument("--json", action="store_true", help="also print all figures as JSON")
    args = parser.parse_args(argv)
    if args.sentences < 1 or args.transformer_sentences < 1 or args.runs < 1:
        parser.error("--sentences, --transformer-sentences and --runs must be at least 1")
    report: dict = {"machine": machine(), "models": {}}
    m = report["machine"]
    print(
        f"machine: {m['cpu_count']} CPUs ({m['usable_cpus']} usable), {m['processor']}, "
        f"Python {m['python']}, torch threads {m['torch_threads']}, load {m['load_average']}"
    )
    for name in args.model or ["tfidf"]:
        try:
            folder = resolve_model(name)
            meta = load_predictor(folder).meta
        except (ArtifactError, ImportError) as exc:
            print(f"bench: model error: {exc}", file=sys.stderr)
            return exitcodes.MODEL
        backend = meta.get("backend")
        if backend not in ("tfidf", "indobert"):
            sentences = bench_sentences(args.transformer_sentences)
            r = bench_generic(folder, sentences, args.runs)
            print(f"{name} ({folder}, {r['model']}), {len(sentences)} sentences:")
            print(f"  cold start predict.py:    {r['cold_start_s']:10.3f} s")
            print(f"  Engine (predict.py path): {r['engine_sentences_per_s']:10.1f} sentences/s")
        elif backend == "indobert":
            sentences = bench_sentences(args.transformer_sentences)
            r = bench_transformer(folder, sentences)
            print(f"{name} ({folder}, {r['model']}), {len(sentences)} sentences:")
            print(f"  ours (Engine):            {r['ours_sentences_per_s']:10.1f} sentences/s")
            if "plain_pipeline_error" in r:
                print(f"  plain pipeline: not measured ({r['plain_pipeline_error']})")
            else:
                print(
                    f"  plain pipeline:           {r['plain_pipeline_sentences_per_s']:10.1f} "
                    f"sentences/s  -> ours x{r['ratio_vs_plain']:.2f}\n"
                    f"  plain pipeline, batch 32: "
                    f"{r['plain_pipeline_batch32_sentences_per_s']:10.1f} sentences/s  "
                    f"-> ours x{r['ratio_vs_plain_batch32']:.2f}"
                )
        else:
            sentences = bench_sentences(args.sentences)
            r = bench_tfidf(folder, sentences, args.runs)
            print(f"{name} ({folder}, {r['model']}), {len(sentences)} sentences:")
            print(
                f"  cold start predict.py:    {r['cold_start_s']:10.3f} s "
                f"(median of {args.runs}: {r['cold_start_runs_s']})"
            )
            print(
                f"  Predictor.predict:        {r['predictor_plain_sentences_per_s']:10.0f} "
                "sentences/s (scikit-learn features)"
            )
            print(
                f"  Engine (predict.py path): {r['engine_sentences_per_s']:10.0f} sentences/s "
                f"(cached features: {r['engine_accelerated']})"
            )
            print(
                f"  predict.py big JSONL:     {r['predict_cli_sentences_per_s']:10.0f} "
                "sentences/s (spawn to exit, default --jobs)"
            )
            print(
                f"  predict.py --jobs 1:      "
                f"{r['predict_cli_one_process_sentences_per_s']:10.0f} sentences/s"
            )
        report["models"][name] = r
    if args.json:
        print(json.dumps(report, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
