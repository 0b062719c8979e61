"""Speed of a loaded model on this machine: batch throughput and single-sentence latency.

Both are measured through `Predictor.predict`, i.e. scoring plus the threshold/arg-max
decision, which is what a user of `predict.py` waits for. Each model is warmed up first
(lazy imports, allocator and thread-pool start-up, caches), then measured with a time
budget rather than a fixed count, so a fast TF-IDF model gets enough calls for stable
figures and a slow transformer on CPU does not hold the run for minutes. All models of a
run are timed in the same process, one after the other, so their figures compare.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from model.predictor import Predictor

log = logging.getLogger("eval.timing")


@dataclass(frozen=True)
class TimingSettings:
    """Budgets for one model's measurement (recorded in metrics.json with the results)."""

    batch_size: int = 32
    # Throughput: predict batches until this many seconds or sentences, whichever first.
    min_seconds: float = 2.0
    max_sentences: int = 20_000
    # Latency: this many single-sentence calls, or fewer if the time budget runs out.
    latency_calls: int = 200
    latency_max_seconds: float = 10.0
    warmup_calls: int = 3

    def as_dict(self) -> dict:
        return asdict(self)


def throughput(predictor: Predictor, sentences: Sequence[str], settings: TimingSettings) -> dict:
    """Sentences per second when predicting in batches, cycling through `sentences`."""
    batches = [
        list(sentences[i : i + settings.batch_size])
        for i in range(0, len(sentences), settings.batch_size)
    ]
    predictor.predict(batches[0])  # warm-up
    done = calls = 0
    started = time.perf_counter()
    elapsed = 0.0
    while True:
        batch = batches[calls % len(batches)]
        predictor.predict(batch)
        done += len(batch)
        calls += 1
        elapsed = time.perf_counter() - started
        if elapsed >= settings.min_seconds or done >= settings.max_sentences:
            break
    return {
        "sentences": done,
        "batches": calls,
        "seconds": elapsed,
        "sentences_per_second": done / elapsed if elapsed > 0 else None,
    }


def latency(predictor: Predictor, sentences: Sequence[str], settings: TimingSettings) -> dict:
    """Percentiles of single-sentence `predict` calls, in milliseconds."""
    for i in range(settings.warmup_calls):
        predictor.predict([sentences[i % len(sentences)]])
    times = []
    budget_start = time.perf_counter()
    for i in range(settings.latency_calls):
        started = time.perf_counter()
        predictor.predict([sentences[i % len(sentences)]])
        times.append((time.perf_counter() - started) * 1000.0)
        if time.perf_counter() - budget_start >= settings.latency_max_seconds:
            break
    ms = np.asarray(times)
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return {
        "calls": len(times),
        "mean_ms": float(ms.mean()),
        "p50_ms": float(p50),
        "p95_ms": float(p95),
        "p99_ms": float(p99),
        "max_ms": float(ms.max()),
    }


def measure(predictor: Predictor, sentences: Sequence[str], settings: TimingSettings) -> dict:
    """Throughput and latency of one model on the evaluation sentences."""
    if not sentences:
        raise ValueError("no sentences to time")
    log.info("timing: throughput (budget %.1f s)", settings.min_seconds)
    result = {"throughput": throughput(predictor, sentences, settings)}
    log.info("timing: latency (up to %d single-sentence calls)", settings.latency_calls)
    result["latency"] = latency(predictor, sentences, settings)
    return result
