"""Grouped cross-validation, the main job on a tiny setting, and the benchmark: real runs."""

from __future__ import annotations

import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TFIDF_TEST_SET

from data.records import SPLITS, dumps_jsonl
from data.validate import DEFAULT_SPLITS_DIR, load_splits
from training import cv
from training.common import load_config
from training.train_tfidf import DEFAULT_CONFIG

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def small_splits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The committed splits cut to 40 stories (and 100 authored sentences), kept valid."""
    full = load_splits(DEFAULT_SPLITS_DIR)
    real = [r for s in SPLITS for r in full[s] if r["source"] != "authored"]
    keep = sorted({r["story_id"] for r in real})[:40]
    out = tmp_path_factory.mktemp("small") / "splits"
    out.mkdir()
    for s in SPLITS:
        rows = [r for r in full[s] if r["story_id"] in keep]
        if s == "train":
            rows += [r for r in full[s] if r["source"] == "authored"][:100]
        (out / f"{s}.jsonl").write_text(dumps_jsonl(rows), encoding="utf-8")
    return out


def test_cv_folds_are_disjoint_stories_and_the_summary_is_their_mean(small_splits: Path) -> None:
    config = load_config(DEFAULT_CONFIG, TFIDF_TEST_SET)
    result = cv.cross_validate("tfidf", config, small_splits, folds=3)
    folds = result["per_fold"]
    assert len(folds) == 3
    assert sum(f["sentences"] for f in folds) == result["real_sentences"]
    for key in cv.FIGURES:
        assert result["summary"][key]["mean"] == pytest.approx(
            statistics.fmean(f[key] for f in folds)
        )
    # Each fold's held-out stories are disjoint from the others and from its train part.
    real = [r for s in load_splits(small_splits).values() for r in s if r["source"] != "authored"]
    seen: set[str] = set()
    for _, parts in cv.fold_splits(real, [], 3, config["seed"]):
        test = {r["story_id"] for r in parts["test"]}
        rest = {r["story_id"] for r in parts["train"] + parts["dev"]}
        assert not test & rest and not test & seen
        seen |= test
    again = cv.cross_validate("tfidf", config, small_splits, folds=3)
    strip = [{k: v for k, v in f.items() if k != "seconds"} for f in folds]
    assert strip == [{k: v for k, v in f.items() if k != "seconds"} for f in again["per_fold"]]


def test_cv_refuses_too_few_stories(small_splits: Path, tmp_path: Path) -> None:
    out = tmp_path / "cv.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "training.cv",
            "--backend",
            "tfidf",
            "--data",
            str(small_splits),
            "--folds",
            "60",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert proc.returncode == 3 and "needs more than 60 stories" in proc.stderr
    assert not out.exists()


def test_pipeline_runs_end_to_end_on_the_baseline(tmp_path: Path) -> None:
    """The main job with the TF-IDF backend only: build, validate, train, evaluate, report."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline",
            "--backends",
            "tfidf",
            "--models-dir",
            str(tmp_path / "models"),
            "--report",
            str(tmp_path / "report"),
            *[a for item in TFIDF_TEST_SET for a in ("--set", item)],
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = (tmp_path / "report" / "report.md").read_text(encoding="utf-8")
    assert "## Headline" in report and "**tfidf**" in report
    assert (tmp_path / "models" / "tfidf" / "manifest.json").is_file()


def test_bench_prints_its_table(tfidf_model_dir: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "eval.bench",
            "--model",
            str(tfidf_model_dir),
            "--sentences",
            "300",
            "--runs",
            "1",
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "cold start predict.py" in proc.stdout and "sentences/s" in proc.stdout
    assert proc.stdout.startswith("machine:")
