"""Speed of the prediction path: cold start and throughput, measured the way users pay them.

    python -m eval.bench [--model tfidf] [--model indobert] [--sentences N]
                         [--transformer-sentences N] [--runs R] [--json]

For a TF-IDF model: the cold start of `predict.py` (median of R subprocess runs, wall clock
from spawn to the first byte on stdout, so interpreter start, imports, manifest check and
loading all count) and, as a pair measured in turns, `predict.py` for one sentence spawn to
exit against `python -c "import numpy"` (medians, spread, the machine's load before and
after, the ratio; target at most 2x) with predict.py's peak memory; the artifact's size; the
throughput of the loaded `Predictor` through `model.inference.Engine` (what `predict.py`
runs, NumPy only) and through scikit-learn objects rebuilt from the same arrays (the
reference, here only: `sklearn_reference`), with the largest score difference between the
two; and of `predict.py` itself on a JSON Lines file of N sentences (spawn to exit, with and
without worker processes).

For a transformer model (`indobert`): the artifact's size; the manifest check alone and
check + load on each runtime (in-process, medians); category micro-F1 and stance macro-F1 on
dev and test through the Predictor (the artifact's calibration and thresholds) for the
float32 torch model and the int8 ONNX model, with the deltas; throughput, in turns, of a
plain `transformers.pipeline("text-classification", batch_size=32)` built from the SAME
encoder weights and stance head (copied into an `AutoModelForSequenceClassification` of the
encoder's type, saved to a temporary folder: the yardstick), of the torch engine and of the
ONNX engine through `model.inference.Engine`, with the ratios to the pipeline; and the cold
start of `predict.py` for one sentence, spawn to exit, ONNX vs `--runtime torch` vs
`python -c "import torch, transformers"` (and the original folder when it predates the
ONNX export: such a folder is first re-saved into a temporary one, which is measured).

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


class SklearnReference:
    """scikit-learn objects rebuilt from a TF-IDF artifact's arrays: the reference the
    NumPy scorer is measured and checked against. Never on a prediction path."""

    def __init__(self, scorer: tfidf.TfidfScorer) -> None:
        import numpy as np
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.multiclass import OneVsRestClassifier, _ConstantPredictor
        from sklearn.pipeline import FeatureUnion
        from sklearn.preprocessing import LabelBinarizer

        parts = []
        for part in scorer.parts:
            if part.idf is None:
                raise ValueError("the reference needs idf weights (use_idf=True)")
            vec = TfidfVectorizer(
                analyzer=part.analyzer,
                ngram_range=part.ngram_range,
                lowercase=part.lowercase,
                strip_accents=part.strip_accents,
                token_pattern=part.token_pattern,
                binary=part.binary,
                sublinear_tf=part.sublinear_tf,
                norm=part.norm,
                dtype=np.dtype(part.dtype).type,
                vocabulary=part.vocabulary,
            )
            vec.idf_ = part.idf  # also validates and fixes the vocabulary
            parts.append((part.name, vec))
        self.features = FeatureUnion(parts)
        estimators = []
        for j, constant in enumerate(scorer.category_constant):
            if constant is None:
                est = LogisticRegression()
                est.classes_ = np.array([0, 1])
                est.coef_ = np.ascontiguousarray(scorer.category_weights[:, j][None, :])
                est.intercept_ = scorer.category_intercept[j : j + 1].copy()
            else:
                est = _ConstantPredictor()
                est.y_ = np.array([constant])
            estimators.append(est)
        self.categories = OneVsRestClassifier(LogisticRegression())
        self.categories.estimators_ = estimators
        self.categories.label_binarizer_ = LabelBinarizer(sparse_output=True).fit(
            np.eye(len(estimators), dtype=int)
        )
        self.stance = LogisticRegression()
        self.stance.classes_ = np.array(scorer.stance_classes)
        self.stance.coef_ = np.ascontiguousarray(scorer.stance_weights.T)
        self.stance.intercept_ = scorer.stance_intercept.copy()

    def scores(self, sentences: list[str]):
        """`model.predictor.Backend.scores` the scikit-learn way (as before this format)."""
        import numpy as np

        from model.predictor import Scores

        x = self.features.transform(list(sentences))
        stance = np.zeros((x.shape[0], len(STANCES)))
        stance[:, self.stance.classes_] = self.stance.predict_proba(x)
        categories = np.asarray(self.categories.predict_proba(x), dtype=np.float64)
        return Scores(categories=categories, stance=stance)


def spawn_to_exit(cmd: list[str]) -> tuple[float, bytes]:
    """Seconds from spawn to exit, and the stdout, of one run."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.run(cmd, stdout=out, stderr=err, cwd=REPO_ROOT, check=False)
        elapsed = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[1:3]} failed: {stderr.decode(errors='replace')}")
    return elapsed, stdout


# A child's peak memory (ru_maxrss) counts what it shared with its parent when forked, so
# a large bench process would inflate it: a small launcher process runs the command.
_PEAK_LAUNCHER = (
    "import resource, subprocess, sys; "
    "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode; "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(code)"
)


def peak_memory_mb(cmd: list[str]) -> float:
    """Peak resident memory (MB) of one run of `cmd`."""
    proc = subprocess.run(
        [sys.executable, "-c", _PEAK_LAUNCHER, *cmd],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[1:3]} failed: {proc.stderr}")
    return int(proc.stdout.split()[-1]) / 1024


def _spread(times: list[float]) -> dict:
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "runs_s": [round(t, 3) for t in times],
    }


def tfidf_cold_start_pair(folder: Path, runs: int) -> dict:
    """`predict.py --model FOLDER SENTENCE` spawn to exit against `python -c "import numpy"`.

    The two alternate run by run, so machine load falls on both alike; the ratio of the
    medians is the figure (target: at most 2). One warm-up run of each first, so neither
    pays for cold file caches.
    """
    predict = [sys.executable, str(PREDICT), "--model", str(folder), PROBE_SENTENCE]
    numpy = [sys.executable, "-c", "import numpy"]
    spawn_to_exit(predict)
    spawn_to_exit(numpy)
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    ours, base = [], []
    for _ in range(runs):
        seconds, stdout = spawn_to_exit(predict)
        if not stdout.strip():
            raise RuntimeError("predict.py printed nothing for the probe sentence")
        ours.append(seconds)
        base.append(spawn_to_exit(numpy)[0])
    load_after = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "predict": _spread(ours),
        "import_numpy": _spread(base),
        "ratio": statistics.median(ours) / statistics.median(base),
        "target_ratio": 2.0,
        "predict_peak_rss_mb": peak_memory_mb(predict),
        "import_numpy_peak_rss_mb": peak_memory_mb(numpy),
        "load_before": load_before,
        "load_after": load_after,
        # Without a bytecode cache every run compiles the project's modules again.
        "bytecode_cache": not sys.flags.dont_write_bytecode,
    }


def artifact_size(folder: Path) -> dict:
    """Bytes of the folder (what one copies to deploy it) and of each file in it."""
    files = {
        p.relative_to(folder).as_posix(): p.stat().st_size
        for p in sorted(Path(folder).rglob("*"))
        if p.is_file()
    }
    return {"total_bytes": sum(files.values()), "files": files}


def bench_tfidf(folder: Path, sentences: list[str], runs: int) -> dict:
    """The generic figures, the cold-start pair, the scikit-learn reference, predict.py."""
    import numpy as np

    out = bench_generic(folder, sentences, runs)
    out["cold_start_pair"] = tfidf_cold_start_pair(folder, runs)
    out["artifact"] = artifact_size(folder)
    predictor = load_predictor(folder)
    reference = SklearnReference(predictor.backend)
    plain_predictor = Predictor(backend=reference, meta=predictor.meta, path=predictor.path)
    batch = Engine(predictor).batch_sentences
    started = time.perf_counter()
    for i in range(0, len(sentences), batch):
        plain_predictor.predict(sentences[i : i + batch])
    out["predictor_plain_sentences_per_s"] = _rate(len(sentences), time.perf_counter() - started)
    sample = sentences[:batch]
    ours, theirs = predictor.backend.scores(sample), reference.scores(sample)
    out["max_abs_score_difference_vs_sklearn"] = float(
        max(
            np.abs(ours.categories - theirs.categories).max(),
            np.abs(ours.stance - theirs.stance).max(),
        )
    )
    out["predict_cli_sentences_per_s"] = predict_cli_rate(folder, sentences, jobs=0)
    out["predict_cli_one_process_sentences_per_s"] = predict_cli_rate(folder, sentences, jobs=1)
    return out


def print_tfidf(name: str, folder: Path, r: dict, n_sentences: int, runs: int) -> None:
    """The TF-IDF rows of the bench table, each beside its yardstick."""
    pair, size = r["cold_start_pair"], r["artifact"]
    ours, numpy = pair["predict"], pair["import_numpy"]
    print(f"{name} ({folder}, {r['model']}), {n_sentences} sentences:")
    print(
        f"  cold start predict.py:    {r['cold_start_s']:10.3f} s to first byte "
        f"(median of {runs}: {r['cold_start_runs_s']})"
    )
    print(
        f"  predict.py, 1 sentence:   {ours['median_s']:10.3f} s spawn to exit "
        f"[{ours['min_s']:.3f}-{ours['max_s']:.3f}], peak {pair['predict_peak_rss_mb']:.0f} MB"
    )
    print(
        f"  python -c 'import numpy': {numpy['median_s']:10.3f} s "
        f"[{numpy['min_s']:.3f}-{numpy['max_s']:.3f}], peak "
        f"{pair['import_numpy_peak_rss_mb']:.0f} MB  -> predict.py x{pair['ratio']:.2f} "
        f"(target <= x{pair['target_ratio']:.0f})"
    )
    print(
        f"    (medians of {runs} runs in turns; load {_load(pair['load_before'])} -> "
        f"{_load(pair['load_after'])}; bytecode cache "
        f"{'on' if pair['bytecode_cache'] else 'off: PYTHONDONTWRITEBYTECODE'})"
    )
    print(
        f"  artifact:                 {size['total_bytes'] / 1e6:10.2f} MB "
        f"({', '.join(f'{k} {v / 1e6:.2f}' for k, v in size['files'].items())})"
    )
    print(
        f"  Predictor, scikit-learn:  {r['predictor_plain_sentences_per_s']:10.0f} "
        "sentences/s (reference rebuilt from the artifact's arrays)"
    )
    print(
        f"  Engine (predict.py path): {r['engine_sentences_per_s']:10.0f} sentences/s "
        f"(NumPy only; largest score difference to scikit-learn "
        f"{r['max_abs_score_difference_vs_sklearn']:.1e})"
    )
    print(
        f"  predict.py big JSONL:     {r['predict_cli_sentences_per_s']:10.0f} "
        "sentences/s (spawn to exit, default --jobs)"
    )
    print(
        f"  predict.py --jobs 1:      "
        f"{r['predict_cli_one_process_sentences_per_s']:10.0f} sentences/s"
    )


def _load(load: tuple | None) -> str:
    return "n/a" if load is None else "/".join(f"{x:.2f}" for x in load)


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
    tagger = getattr(predictor.backend, "model", None)
    if hasattr(tagger, "encoder") and hasattr(tagger, "stance_head"):  # model.transformer
        found = {"encoder": tagger.encoder, "linears": [tagger.stance_head]}
        found["tokenizer"] = predictor.backend.tokenizer
    else:
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


def _load_seconds(folder: Path, runtime_name: str | None, runs: int) -> dict:
    """Seconds to verify and load a folder in this process (imports already done)."""
    load_predictor(folder, runtime_name)  # warm-up: imports and file cache
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        load_predictor(folder, runtime_name)
        times.append(time.perf_counter() - started)
    return _spread(times)


def transformer_load(folder: Path, runs: int) -> dict:
    """Manifest check alone, and check + load on each runtime (medians, in-process)."""
    from model.artifact import verify_artifact

    verify = []
    for _ in range(runs):
        started = time.perf_counter()
        verify_artifact(folder)
        verify.append(time.perf_counter() - started)
    return {
        "verify": _spread(verify),
        "onnx": _load_seconds(folder, "onnx", runs),
        "torch": _load_seconds(folder, "torch", runs),
        "target_s": 1.5,
    }


def transformer_accuracy(engines: dict[str, Predictor], splits_dir: Path = DEFAULT_SPLITS_DIR):
    """Category micro-F1 and stance macro-F1 on dev and test through each Predictor (the
    artifact's calibration and thresholds), and each engine's difference to the first."""
    import numpy as np

    from model.scorer import label_arrays, multilabel_report, stance_report

    splits = load_splits(splits_dir)
    out: dict = {}
    for split in ("dev", "test"):
        texts, y_cat, y_stance = label_arrays(splits[split])
        rows, scores = {}, {}
        for name, predictor in engines.items():
            scores[name] = predictor.scores(texts)
            cat, stance = predictor.decide(scores[name])
            rows[name] = {
                "category_micro_f1": multilabel_report(y_cat, cat)["micro_f1"],
                "stance_macro_f1": stance_report(y_stance, stance)["macro_f1"],
            }
        first = next(iter(engines))
        for name in engines:
            for metric in ("category_micro_f1", "stance_macro_f1"):
                rows[name][f"{metric}_delta"] = rows[name][metric] - rows[first][metric]
            rows[name]["max_abs_score_difference"] = float(
                max(
                    np.abs(scores[name].categories - scores[first].categories).max(),
                    np.abs(scores[name].stance - scores[first].stance).max(),
                )
            )
        out[split] = {"sentences": len(texts), **rows}
    out["target_abs_delta"] = 0.01
    return out


def transformer_throughput(
    engines: dict[str, Predictor], sentences: list[str], runs: int, tmp: Path
) -> dict:
    """Sentences/s of a plain `pipeline(..., batch_size=32)` on the same weights (the
    yardstick) and of each engine through `model.inference.Engine`, in turns, R passes each."""
    docs = [Document(id=i, text=s) for i, s in enumerate(sentences)]
    passes: dict[str, list[float]] = {"plain_pipeline_batch32": []}
    runners = {}
    for name, predictor in engines.items():
        engine = Engine(predictor)
        engine.score_batch(docs[:16])  # warm-up: first-call allocations are not throughput
        runners[name] = lambda engine=engine: [None for _ in engine.run(docs)]
        passes[name] = []
    out: dict = {}
    try:
        pipe = build_plain_pipeline(engines["torch"], tmp / "plain-pipeline")
        max_length = min(int(getattr(pipe.tokenizer, "model_max_length", 512)), 512)
        kwargs = {"truncation": True, "max_length": max_length, "batch_size": 32}
        pipe(sentences[:8], **kwargs)  # warm-up
        runners = {"plain_pipeline_batch32": lambda: pipe(sentences, **kwargs), **runners}
    except Exception as exc:
        out["plain_pipeline_error"] = str(exc)
        del passes["plain_pipeline_batch32"]
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    for _ in range(runs):
        for name, run in runners.items():
            started = time.perf_counter()
            run()
            passes[name].append(_rate(len(sentences), time.perf_counter() - started))
    out["load_before"] = load_before
    out["load_after"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    for name, rates in passes.items():
        out[name] = {
            "sentences_per_s": statistics.median(rates),
            "min": min(rates),
            "max": max(rates),
            "runs": [round(r, 1) for r in rates],
        }
    if "plain_pipeline_batch32" in out:
        plain = out["plain_pipeline_batch32"]["sentences_per_s"]
        for name in engines:
            out[name]["ratio_vs_plain_batch32"] = out[name]["sentences_per_s"] / plain
    out["target_ratio"] = 4.0
    return out


def transformer_cold_start(folder: Path, runs: int, original: Path | None = None) -> dict:
    """`predict.py` for one sentence, spawn to exit: ONNX, `--runtime torch`, the original
    (pre-ONNX) folder if there is one, and `python -c "import torch, transformers"`, in
    turns after one warm-up run each; medians with spread, peak memory, the machine's load."""
    predict = [sys.executable, str(PREDICT), "--model"]
    commands = {
        "onnx": [*predict, str(folder), PROBE_SENTENCE],
        "torch": [*predict, str(folder), "--runtime", "torch", PROBE_SENTENCE],
        "import_torch_transformers": [sys.executable, "-c", "import torch, transformers"],
    }
    if original is not None:
        commands["original_folder"] = [*predict, str(original), PROBE_SENTENCE]
    for cmd in commands.values():
        spawn_to_exit(cmd)
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, cmd in commands.items():
            times[name].append(spawn_to_exit(cmd)[0])
    out: dict = {name: _spread(t) for name, t in times.items()}
    out["load_before"] = load_before
    out["load_after"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    for name in ("onnx", "torch"):
        out[name]["peak_rss_mb"] = peak_memory_mb(commands[name])
    onnx = out["onnx"]["median_s"]
    out["onnx_vs_torch"] = onnx / out["torch"]["median_s"]
    out["onnx_vs_import"] = onnx / out["import_torch_transformers"]["median_s"]
    if original is not None:
        out["onnx_vs_original"] = onnx / out["original_folder"]["median_s"]
    out["target_ratio"] = 0.25
    return out


def bench_transformer(folder: Path, sentences: list[str], runs: int) -> dict:
    """Every transformer row: size, load, accuracy, throughput, cold start.

    A folder saved before the ONNX export is first re-saved (`model.transformer.resave`)
    into a temporary folder, which is then what is measured, beside the original where a
    row has one (size, cold start).
    """
    from model.onnx_tagger import ONNX_FILE

    out: dict = {}
    with tempfile.TemporaryDirectory(prefix="netralitas-bench-") as tmp:
        tmp_dir = Path(tmp)
        original = None
        if not (Path(folder) / ONNX_FILE).is_file():
            from model.transformer import resave

            original, folder = Path(folder), tmp_dir / "resaved"
            started = time.perf_counter()
            resave(original, folder)
            out["resaved"] = {
                "from": str(original),
                "seconds": time.perf_counter() - started,
                "original_artifact": artifact_size(original),
            }
        out["artifact"] = artifact_size(folder)
        out["artifact"]["target_bytes"] = 130_000_000
        out["load"] = transformer_load(folder, runs)
        engines = {"torch": load_predictor(folder, "torch"), "onnx": load_predictor(folder, "onnx")}
        out["model"] = Engine(engines["onnx"]).model
        out["accuracy"] = transformer_accuracy(engines)
        out["throughput"] = transformer_throughput(engines, sentences, runs, tmp_dir)
        del engines
        out["cold_start"] = transformer_cold_start(folder, runs, original)
    return out


def print_transformer(name: str, folder: Path, r: dict, n_sentences: int, runs: int) -> None:
    """The transformer rows of the bench table, each beside its yardstick."""
    size, load, acc, tp, cs = (
        r["artifact"],
        r["load"],
        r["accuracy"],
        r["throughput"],
        r["cold_start"],
    )
    print(f"{name} ({folder}, {r['model']}), {n_sentences} sentences, {runs} runs:")
    if "resaved" in r:
        old = r["resaved"]["original_artifact"]["total_bytes"]
        print(
            f"  (re-saved from the pre-ONNX folder in {r['resaved']['seconds']:.1f} s; "
            f"that folder: {old / 1e6:.1f} MB)"
        )
    files = ", ".join(f"{k} {v / 1e6:.1f}" for k, v in size["files"].items() if v > 100_000)
    print(
        f"  artifact:                 {size['total_bytes'] / 1e6:10.1f} MB "
        f"(target <= {size['target_bytes'] / 1e6:.0f}; {files})"
    )

    def span(s: dict) -> str:
        return f"{s['median_s']:.3f} s [{s['min_s']:.3f}-{s['max_s']:.3f}]"

    print(f"  verify manifest:          {span(load['verify'])}")
    print(f"  verify + load, ONNX:      {span(load['onnx'])}  (target <= {load['target_s']} s)")
    print(f"  verify + load, torch:     {span(load['torch'])}")
    if "plain_pipeline_error" in tp:
        print(f"  plain pipeline: not measured ({tp['plain_pipeline_error']})")
    for key, label in (
        ("plain_pipeline_batch32", "plain pipeline, batch 32"),
        ("torch", "torch float32 (Engine)"),
        ("onnx", "ONNX int8 (Engine)"),
    ):
        if key not in tp:
            continue
        row = tp[key]
        ratio = (
            f"  -> x{row['ratio_vs_plain_batch32']:.2f}" if "ratio_vs_plain_batch32" in row else ""
        )
        target = f" (target >= x{tp['target_ratio']:.0f})" if key == "onnx" and ratio else ""
        print(
            f"  {label + ':':<26}{row['sentences_per_s']:8.1f} sentences/s "
            f"[{row['min']:.1f}-{row['max']:.1f}]{ratio}{target}"
        )
    print(f"    (load {_load(tp['load_before'])} -> {_load(tp['load_after'])})")
    for split in ("dev", "test"):
        t, o = acc[split]["torch"], acc[split]["onnx"]
        print(
            f"  {split} ({acc[split]['sentences']}): category micro-F1 torch "
            f"{t['category_micro_f1']:.4f} int8 {o['category_micro_f1']:.4f} "
            f"(delta {o['category_micro_f1_delta']:+.4f}); "
            f"stance macro-F1 torch {t['stance_macro_f1']:.4f} int8 {o['stance_macro_f1']:.4f} "
            f"(delta {o['stance_macro_f1_delta']:+.4f}); max |score diff| "
            f"{o['max_abs_score_difference']:.3f} (target |delta| <= {acc['target_abs_delta']})"
        )
    rows = [
        ("onnx", "predict.py, ONNX:"),
        ("torch", "predict.py --runtime torch:"),
        ("original_folder", "predict.py, pre-ONNX folder:"),
        ("import_torch_transformers", "import torch, transformers:"),
    ]
    for key, label in rows:
        if key in cs:
            peak = f", peak {cs[key]['peak_rss_mb']:.0f} MB" if "peak_rss_mb" in cs[key] else ""
            print(f"  {label:<30}{span(cs[key])} spawn to exit{peak}")
    extra = (
        f", x{cs['onnx_vs_original']:.2f} of the pre-ONNX folder"
        if "onnx_vs_original" in cs
        else ""
    )
    print(
        f"    ONNX cold start x{cs['onnx_vs_torch']:.2f} of torch{extra}, "
        f"x{cs['onnx_vs_import']:.2f} of importing torch+transformers (target <= "
        f"x{cs['target_ratio']}); load {_load(cs['load_before'])} -> {_load(cs['load_after'])}"
    )


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
            r = bench_transformer(folder, sentences, args.runs)
            print_transformer(name, folder, r, len(sentences), args.runs)
        else:
            sentences = bench_sentences(args.sentences)
            r = bench_tfidf(folder, sentences, args.runs)
            print_tfidf(name, folder, r, len(sentences), args.runs)
        report["models"][name] = r
    if args.json:
        print(json.dumps(report, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
