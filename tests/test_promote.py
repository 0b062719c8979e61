"""Promotion gate: a significantly worse model is kept out, a better one goes in (and with
--apply replaces the current folder); the rule itself on constructed figures."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from retrain_support import DATA, SMALL_GRID

from data.records import dumps_jsonl, read_jsonl
from eval.promote import decide, main
from model.artifact import read_meta
from model.registry import load_predictor
from training.common import load_config
from training.train_tfidf import DEFAULT_CONFIG, train


@pytest.fixture(scope="module")
def weak_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """TF-IDF trained on one train sentence in twelve (dev and test as committed)."""
    splits = tmp_path_factory.mktemp("weak_splits")
    for f in (DATA / "splits").iterdir():
        shutil.copy(f, splits / f.name)
    train_file = splits / "train.jsonl"
    train_file.write_text(dumps_jsonl(read_jsonl(train_file)[::12]), encoding="utf-8")
    out = tmp_path_factory.mktemp("models") / "weak"
    train(load_config(DEFAULT_CONFIG, SMALL_GRID), splits, out)
    return out


def _report(out: Path) -> dict:
    return json.loads((out / "promotion.json").read_text(encoding="utf-8"))


def test_a_significantly_worse_candidate_is_kept_out(
    weak_model_dir: Path, tfidf_model_dir: Path, tmp_path: Path
) -> None:
    current = tmp_path / "current"
    shutil.copytree(tfidf_model_dir, current)
    out = tmp_path / "report"
    args = ["--candidate", str(weak_model_dir), "--current", str(current), "--out", str(out)]
    assert main([*args, "--apply"]) == 5
    report = _report(out)
    assert report["verdict"] == "keep" and report["applied"] is False
    assert "significantly worse" in report["reason"]
    for fig in report["headline"].values():
        assert fig["diff"] < 0 and fig["significant"] and fig["ci95"][1] < 0
        assert fig["diff"] == pytest.approx(fig["candidate"] - fig["current"])
    assert report["models"]["candidate"]["version"] == read_meta(weak_model_dir)["version"]
    assert report["data"]["path"] == str((DATA / "splits" / "test.jsonl").resolve())
    md = (out / "promotion.md").read_text(encoding="utf-8")
    assert md.startswith("# Promotion gate: **KEEP**") and "category micro-F1" in md
    assert read_meta(current)["version"] == read_meta(tfidf_model_dir)["version"]


def test_a_better_candidate_is_promoted_and_installed(
    weak_model_dir: Path, tfidf_model_dir: Path, tmp_path: Path
) -> None:
    current = tmp_path / "current"
    shutil.copytree(weak_model_dir, current)
    out = tmp_path / "report"
    args = ["--candidate", str(tfidf_model_dir), "--current", str(current), "--out", str(out)]
    assert main([*args, "--apply", "--policy", "superior", "--bootstrap", "200"]) == 0
    report = _report(out)
    assert report["verdict"] == "promote" and report["applied"] is True
    assert all(f["direction"] == "better" for f in report["headline"].values())
    assert report["run"]["bootstrap"] == 200
    installed = load_predictor(current)  # the manifest of the copy verifies
    assert installed.version == read_meta(tfidf_model_dir)["version"]


def test_the_same_model_is_kept(tfidf_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    model = str(tfidf_model_dir)
    assert main(["--candidate", model, "--current", model, "--out", str(out)]) == 5
    report = _report(out)
    assert report["reason"] == "the candidate is the current model (same version)"
    assert all(f["diff"] == 0 for f in report["headline"].values())


def test_bad_models_and_data_exit_4_and_3(tfidf_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    model = str(tfidf_model_dir)
    assert main(["--candidate", str(tmp_path / "nope"), "--current", model]) == 4
    bad = tmp_path / "test.jsonl"
    bad.write_text('{"id": "x"}\n', encoding="utf-8")
    args = ["--candidate", model, "--current", model, "--data", str(bad), "--out", str(out)]
    assert main(args) == 3
    train_file = DATA / "splits" / "train.jsonl"  # the models' own training data: overlap
    args[args.index(str(bad))] = str(train_file)
    assert main(args) == 3
    assert not out.exists()


def _fig(diff: float, significant: bool) -> dict:
    direction = ("better" if diff > 0 else "worse") if significant else "no difference"
    return {"diff": diff, "significant": significant, "direction": direction}


@pytest.mark.parametrize(
    ("micro", "stance", "policy", "verdict"),
    [
        (_fig(0.05, True), _fig(-0.03, True), "noninferior", "keep"),  # worse on one: never
        (_fig(0.05, True), _fig(-0.03, True), "superior", "keep"),
        (_fig(0.01, False), _fig(0.00, False), "noninferior", "promote"),
        (_fig(0.01, False), _fig(-0.02, False), "noninferior", "keep"),  # falls on balance
        (_fig(0.01, False), _fig(0.02, False), "superior", "keep"),
        (_fig(0.04, True), _fig(-0.01, False), "superior", "promote"),
    ],
)
def test_the_rule(micro: dict, stance: dict, policy: str, verdict: str) -> None:
    figures = {"category_micro_f1": micro, "stance_macro_f1": stance}
    assert decide(figures, policy, same_model=False)[0] == verdict
