"""The evaluation harness end to end, on real TF-IDF models trained on our data.

Most runs call `eval.__main__.main` in-process (fast); one runs `python -m eval` as a
subprocess, exactly as the README documents it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from data.records import dumps_jsonl, read_jsonl
from data.validate import DEFAULT_SPLITS_DIR
from eval.__main__ import main
from eval.harness import model_labels
from model.artifact import read_meta
from model.registry import load_predictor
from model.schema import CATEGORIES, STANCES
from model.scorer import label_arrays, multilabel_report, stance_report
from training.common import load_config
from training.train_tfidf import DEFAULT_CONFIG, train

TEST_FILE = DEFAULT_SPLITS_DIR / "test.jsonl"
FILES = (
    "metrics.json",
    "report.md",
    "report.html",
    "errors.jsonl",
    "per_label_f1.png",
    "stance_confusion.png",
    "reliability.png",
)


@pytest.fixture(scope="module")
def other_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second real TF-IDF model: another seed and a fixed C, so its version differs."""
    out = tmp_path_factory.mktemp("models") / "tfidf_b"
    config = load_config(
        DEFAULT_CONFIG,
        ["seed=7", "categories.C_grid=[1.0]", "stance.C_grid=[1.0]", "cv.folds=2"],
    )
    train(config, DEFAULT_SPLITS_DIR, out)
    return out


@pytest.fixture(scope="module")
def cli_run(
    tfidf_model_dir: Path, other_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[subprocess.CompletedProcess, Path]:
    """`python -m eval` on the test split with both models, as a user would run it."""
    out = tmp_path_factory.mktemp("runs") / "eval"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "eval",
            "--model",
            str(tfidf_model_dir),
            "--model",
            str(other_model_dir),
            "--out",
            str(out),
            "--no-timing",
            "--bootstrap",
            "500",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    return proc, out


def _metrics(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text(encoding="utf-8"))


def _labels(out: Path) -> list[str]:
    return list(_metrics(out)["models"])


def test_cli_run_writes_every_file(cli_run: tuple[subprocess.CompletedProcess, Path]) -> None:
    proc, out = cli_run
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)
    assert "report.md" in proc.stdout
    metrics = _metrics(out)
    assert metrics["cross_validation"] == []  # no --cv file given
    assert list(metrics) == [
        "schema_version",
        "run",
        "models",
        "comparisons",
        "timing",
        "warnings",
        "cross_validation",
    ]
    labels = list(metrics["models"])
    assert len(labels) == 2 and all(re.fullmatch(r"tfidf@[0-9a-f]{12}", x) for x in labels)
    run = metrics["run"]
    assert run["seed"] == 13 and run["bootstrap"]["resamples"] == 500
    assert run["data"]["sentences"] == len(read_jsonl(TEST_FILE))
    assert run["overlap"]["by_model"][labels[0]]["sentences"] == 0
    assert {"platform", "processor", "cpu_count", "python"} <= set(run["machine"])
    assert metrics["timing"] == {"enabled": False}
    for block in metrics["models"].values():
        assert block["backend"] == "tfidf" and block["encoder"] is None
        assert block["size_bytes"] > 0 and block["data_is_its_test_split"] is True
        assert set(block["ci95"]) == {
            "category_micro_f1",
            "category_macro_f1",
            "subset_accuracy",
            "stance_accuracy",
            "stance_macro_f1",
        }
        for ci in block["ci95"].values():
            assert ci["low"] <= ci["estimate"] + 1e-12 and ci["estimate"] <= ci["high"] + 1e-12
        assert 0 <= block["calibration"]["category_ece"] <= 1
        assert len(block["calibration"]["stance_reliability"]) == 10
    (comparison,) = metrics["comparisons"]
    assert (comparison["a"], comparison["b"]) == tuple(labels)
    assert {"exact_p", "chi2_cc_p", "a_only_correct"} <= set(comparison["stance_mcnemar"])
    # The v2 test split shows every label and is large: neither warning applies.
    assert not any("No gold sentence" in w or "Small test set" in w for w in metrics["warnings"])


def test_small_file_without_kontra_gets_both_warnings(
    tfidf_model_dir: Path, tmp_path: Path
) -> None:
    rows = [r for r in read_jsonl(TEST_FILE) if r["stance"] != "kontra"][:40]
    data = tmp_path / "small.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    out = tmp_path / "run"
    argv = ["--model", str(tfidf_model_dir), "--data", str(data), "--out", str(out)]
    assert main([*argv, "--no-timing", "--bootstrap", "200"]) == 0
    warnings = _metrics(out)["warnings"]
    assert any("No gold sentence" in w and "stance kontra" in w for w in warnings)
    assert any("Small test set: 40 sentences" in w for w in warnings)


def test_metrics_agree_with_the_metric_functions(
    cli_run: tuple[subprocess.CompletedProcess, Path], tfidf_model_dir: Path
) -> None:
    _, out = cli_run
    block = _metrics(out)["models"][_labels(out)[0]]
    predictor = load_predictor(tfidf_model_dir)
    texts, y_cat, y_stance = label_arrays(read_jsonl(TEST_FILE))
    cats, stance = predictor.decide(predictor.scores(texts))
    expected_cats = multilabel_report(y_cat, cats)
    expected_stance = stance_report(y_stance, stance)
    assert block["categories"]["per_label"] == expected_cats["per_label"]
    assert block["categories"]["micro_f1"] == expected_cats["micro_f1"]
    assert block["categories"]["hamming_loss"] == expected_cats["hamming_loss"]
    assert block["stance"]["confusion"] == expected_stance["confusion"]
    assert block["stance"]["accuracy"] == expected_stance["accuracy"]
    assert block["ci95"]["category_micro_f1"]["estimate"] == pytest.approx(
        expected_cats["micro_f1"]
    )
    assert block["thresholds"] == predictor.meta["thresholds"]


def test_errors_file_lists_every_wrong_or_disputed_sentence(
    cli_run: tuple[subprocess.CompletedProcess, Path],
    tfidf_model_dir: Path,
    other_model_dir: Path,
) -> None:
    _, out = cli_run
    records = read_jsonl(TEST_FILE)
    texts, y_cat, y_stance = label_arrays(records)
    decisions = []
    for folder in (tfidf_model_dir, other_model_dir):
        predictor = load_predictor(folder)
        decisions.append(predictor.decide(predictor.scores(texts)))
    (cats_a, st_a), (cats_b, st_b) = decisions
    wrong_a = (cats_a != y_cat.astype(bool)).any(axis=1) | (st_a != y_stance)
    wrong_b = (cats_b != y_cat.astype(bool)).any(axis=1) | (st_b != y_stance)
    disagree = (cats_a != cats_b).any(axis=1) | (st_a != st_b)
    expected = [r["id"] for r, f in zip(records, wrong_a | wrong_b | disagree, strict=True) if f]
    rows = read_jsonl(out / "errors.jsonl")
    assert [r["id"] for r in rows] == expected
    labels = _labels(out)
    for row in rows:
        assert set(row) == {"id", "text", "gold", "kinds", "wrong", "models"}
        assert set(row["models"]) == set(labels)
        assert set(row["kinds"]) <= {"category_error", "stance_error", "disagreement"}
        for pred in row["models"].values():
            assert set(pred["categories"]) <= set(CATEGORIES) and pred["stance"] in STANCES
            assert len(pred["top_category_scores"]) == 3
            assert pred["stance_correct"] == (pred["stance"] == row["gold"]["stance"])


def test_report_is_readable_and_self_contained(
    cli_run: tuple[subprocess.CompletedProcess, Path],
) -> None:
    _, out = cli_run
    md = (out / "report.md").read_text(encoding="utf-8")
    labels = _labels(out)
    # the headline table comes first, one row per model
    headline = md.index("## Headline")
    assert headline < md.index("## Categories, per label") < md.index("## Provenance")
    assert "| Model | Category micro-F1 [95% CI] |" in md
    # the summary sentence names the figure and the test behind each verdict
    assert "In words: on category micro-F1 (paired bootstrap) " in md
    assert "; on stance accuracy (McNemar) " in md
    for label in labels:
        assert f"| **{label}** |" in md
    for name in ("per_label_f1.png", "stance_confusion.png", "reliability.png"):
        assert f"]({name})" in md
    metrics = _metrics(out)
    assert metrics["run"]["data"]["sha256"] in md and str(metrics["run"]["seed"]) in md
    page = (out / "report.html").read_text(encoding="utf-8")
    assert page.count('src="data:image/png;base64,') == 3
    assert not re.search(r'(src|href)="(?!data:)', page)  # nothing loaded from elsewhere
    assert "<table>" in page and labels[1] in page


def test_output_is_deterministic_apart_from_timing_and_date(
    tfidf_model_dir: Path, other_model_dir: Path, tmp_path: Path
) -> None:
    models = ["--model", str(tfidf_model_dir), "--model", str(other_model_dir)]
    timed = ["--timing-seconds", "0.05", "--latency-calls", "5"]
    assert main([*models, "--out", str(tmp_path / "a"), *timed]) == 0
    assert main([*models, "--out", str(tmp_path / "b"), "--no-timing"]) == 0
    a, b = _metrics(tmp_path / "a"), _metrics(tmp_path / "b")
    timing = a["timing"]
    assert timing["enabled"] is True
    for label in a["models"]:
        t = timing["models"][label]
        assert t["throughput"]["sentences_per_second"] > 0
        lat = t["latency"]
        assert 0 < lat["p50_ms"] <= lat["p95_ms"] <= lat["p99_ms"] <= lat["max_ms"]
    for m in (a, b):
        del m["timing"], m["run"]["date"]
    assert json.dumps(a, indent=2) == json.dumps(b, indent=2)
    errors = (tmp_path / "a" / "errors.jsonl").read_bytes()
    assert errors == (tmp_path / "b" / "errors.jsonl").read_bytes()
    # re-running into the same folder replaces it whole
    (tmp_path / "a" / "stale.txt").write_text("from an earlier run")
    assert main([*models, "--out", str(tmp_path / "a"), "--no-timing", "--seed", "99"]) == 0
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == sorted(FILES)
    assert _metrics(tmp_path / "a")["run"]["seed"] == 99
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries


def _overlapping_file(tmp_path: Path) -> Path:
    """The test split plus three training sentences."""
    train = read_jsonl(DEFAULT_SPLITS_DIR / "train.jsonl")[:3]
    path = tmp_path / "mixed.jsonl"
    path.write_text(dumps_jsonl(read_jsonl(TEST_FILE) + train), encoding="utf-8")
    return path


def test_overlap_with_training_data_is_refused(
    tfidf_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    data = _overlapping_file(tmp_path)
    out = tmp_path / "run"
    code = main(["--model", str(tfidf_model_dir), "--data", str(data), "--out", str(out)])
    assert code == 3
    err = capsys.readouterr().err
    n = len(read_jsonl(data))
    assert "overlaps the training data" in err
    assert f"trained or tuned on 3 of the {n} sentences" in err
    first_train = read_jsonl(DEFAULT_SPLITS_DIR / "train.jsonl")[0]["text"]
    assert first_train[:40] in err
    assert "--allow-overlap" in err
    assert not out.exists()


def test_allow_overlap_writes_the_report_with_a_warning(
    tfidf_model_dir: Path, tmp_path: Path
) -> None:
    data = _overlapping_file(tmp_path)
    out = tmp_path / "run"
    argv = ["--model", str(tfidf_model_dir), "--data", str(data), "--out", str(out)]
    assert main([*argv, "--allow-overlap", "--no-timing"]) == 0
    metrics = _metrics(out)
    (label,) = metrics["models"]
    overlap = metrics["run"]["overlap"]
    assert overlap["allowed"] is True and overlap["by_model"][label]["sentences"] == 3
    assert any(w.startswith("OVERLAP: 3 of") for w in metrics["warnings"])
    md = (out / "report.md").read_text(encoding="utf-8")
    # prominent: a warning block before the headline table
    assert md.index("**⚠ WARNING:**") < md.index("## Headline")
    assert "3 of the" in md and "--allow-overlap" in md
    assert 'class="warn"' in (out / "report.html").read_text(encoding="utf-8")
    assert metrics["comparisons"] == []  # one model: nothing to compare


def test_a_new_labelled_file_is_evaluated_without_code_changes(
    tfidf_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sentences = [
        ("Camat hadir di deklarasi pasangan calon bupati.", ["kampanye"], "kontra"),
        ("ASN dilarang menjadi anggota partai politik.", ["partai_politik"], "pro"),
        ("Debat kandidat digelar di gedung DPRD.", [], "netral"),
    ]
    records = [
        {
            "id": f"new-{i:03d}",
            "article_id": "new",
            "position": i,
            "text": text,
            "categories": cats,
            "stance": stance,
            "source": "corpus",
            "labeller": "hand:test",
        }
        for i, (text, cats, stance) in enumerate(sentences)
    ]
    data = tmp_path / "new.jsonl"
    data.write_text(dumps_jsonl(records), encoding="utf-8")
    # a backend name means its default folder under $NETRALITAS_MODELS
    models = tmp_path / "models"
    shutil.copytree(tfidf_model_dir, models / "tfidf")
    monkeypatch.setenv("NETRALITAS_MODELS", str(models))
    out = tmp_path / "run"
    assert main(["--model", "tfidf", "--data", str(data), "--out", str(out), "--no-timing"]) == 0
    metrics = _metrics(out)
    assert metrics["run"]["data"]["sentences"] == 3
    assert metrics["run"]["data"]["labels"]["stance"] == {"pro": 1, "kontra": 1, "netral": 1}
    (block,) = metrics["models"].values()
    assert block["data_is_its_test_split"] is False
    assert block["path"] == str((models / "tfidf").resolve())
    assert any("not the test split" in w for w in metrics["warnings"])


def test_tampered_or_missing_model_exits_4(
    tfidf_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = tmp_path / "copy"
    shutil.copytree(tfidf_model_dir, folder)
    blob = bytearray((folder / "tfidf.safetensors").read_bytes())
    blob[len(blob) // 2] ^= 0x01
    (folder / "tfidf.safetensors").write_bytes(bytes(blob))
    out = tmp_path / "run"
    assert main(["--model", str(folder), "--out", str(out), "--no-timing"]) == 4
    assert "tfidf.safetensors does not match its SHA-256" in capsys.readouterr().err
    assert main(["--model", "bert-besar", "--out", str(out)]) == 4
    assert "unknown model 'bert-besar'" in capsys.readouterr().err
    assert main(["--model", str(tmp_path / "nothing"), "--out", str(out)]) == 4
    assert not out.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"id": "a"}\n\n{not json\n', r":3: not valid JSON"),
        ("LINE1\nLINE2-unknown-stance\n", r":2 \(t-1\): unknown stance 'setuju'"),
        ("LINE1\nLINE1\n", r":2: duplicate id 't-0' \(first at .*:1\)"),
        ("\n\n", "no records"),
    ],
)
def test_malformed_data_exits_3(
    tfidf_model_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    content: str,
    message: str,
) -> None:
    good = read_jsonl(TEST_FILE)[0]
    line1 = json.dumps({**good, "id": "t-0"}, ensure_ascii=False)
    line2 = json.dumps({**good, "id": "t-1", "stance": "setuju"}, ensure_ascii=False)
    content = content.replace("LINE2-unknown-stance", line2).replace("LINE1", line1)
    data = tmp_path / "bad.jsonl"
    data.write_text(content, encoding="utf-8")
    out = tmp_path / "run"
    assert main(["--model", str(tfidf_model_dir), "--data", str(data), "--out", str(out)]) == 3
    err = capsys.readouterr().err
    assert "data error" in err and re.search(message, err), err
    assert not out.exists()


def test_missing_data_file_and_usage_errors(
    tfidf_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    model = ["--model", str(tfidf_model_dir)]
    assert main([*model, "--data", str(tmp_path / "none.jsonl"), "--out", str(tmp_path)]) == 3
    assert "cannot read" in capsys.readouterr().err
    assert main(["--out", str(tmp_path / "run")]) == 2  # no --model
    assert main([*model, "--bootstrap", "10"]) == 2
    assert main([*model, "--timing-seconds", "0"]) == 2
    assert main([*model, "--seed", "abc"]) == 2


def test_model_labels_are_unique_and_readable() -> None:
    tfidf_a = {"backend": "tfidf", "version": "aaa"}
    tfidf_b = {"backend": "tfidf", "version": "bbb"}
    bert = {"backend": "indobert", "version": "ccc", "encoder": "e5-small-offline"}
    bert_dict = {"backend": "indobert", "version": "ddd", "encoder": {"name": "indobert-p1"}}
    assert model_labels([tfidf_a, bert]) == ["tfidf", "indobert:e5-small-offline"]
    assert model_labels([bert_dict]) == ["indobert:indobert-p1"]
    assert model_labels([tfidf_a, tfidf_b, bert]) == [
        "tfidf@aaa",
        "tfidf@bbb",
        "indobert:e5-small-offline",
    ]
    assert model_labels([tfidf_a, tfidf_a]) == ["tfidf#1", "tfidf#2"]
    labels = model_labels([tfidf_a, tfidf_b, tfidf_a])
    assert len(set(labels)) == 3


def test_same_model_twice_compares_as_equal(tfidf_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    argv = ["--model", str(tfidf_model_dir), "--model", str(tfidf_model_dir)]
    assert main([*argv, "--out", str(out), "--no-timing", "--bootstrap", "200"]) == 0
    metrics = _metrics(out)
    assert list(metrics["models"]) == ["tfidf#1", "tfidf#2"]
    (c,) = metrics["comparisons"]
    assert c["category_micro_f1_diff"] == 0.0 and c["p_value"] == 1.0
    assert c["stance_mcnemar"]["p_value"] == 1.0 and not c["significant"]
    rows = read_jsonl(out / "errors.jsonl")
    assert all("disagreement" not in r["kinds"] for r in rows)
    assert np.isfinite(metrics["models"]["tfidf#1"]["calibration"]["stance_ece"])


def test_a_fine_tuned_transformer_is_evaluated_beside_the_baseline(
    tfidf_model_dir: Path, tiny_encoder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real transformer artifact (tiny BERT, one epoch on our sentences) goes through the
    same predictor interface as TF-IDF: encoder named in its label, parameters, timing."""
    from training.train_transformer import DEFAULT_CONFIG as TRANSFORMER_CONFIG
    from training.train_transformer import train as train_transformer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("NETRALITAS_DEVICE", "cpu")
    config = load_config(
        TRANSFORMER_CONFIG,
        ["train.epochs=1", "model.max_length=64", "model.freeze_word_embeddings=false"],
    )
    folder = tmp_path / "indobert"
    train_transformer(config, DEFAULT_SPLITS_DIR, folder, encoder=str(tiny_encoder))
    out = tmp_path / "run"
    argv = ["--model", str(tfidf_model_dir), "--model", str(folder), "--out", str(out)]
    assert main([*argv, "--timing-seconds", "0.05", "--latency-calls", "3"]) == 0
    metrics = _metrics(out)
    label = f"indobert:{tiny_encoder}"
    assert list(metrics["models"]) == ["tfidf", label]
    block = metrics["models"][label]
    assert block["encoder"] == str(tiny_encoder)
    assert block["parameters"] == read_meta(folder)["parameters"] > 0
    assert metrics["run"]["overlap"]["unchecked"] == []
    assert metrics["run"]["overlap"]["by_model"][label]["sentences"] == 0
    assert metrics["timing"]["models"][label]["latency"]["calls"] == 3
    assert metrics["comparisons"][0]["b"] == label
    md = (out / "report.md").read_text(encoding="utf-8")
    assert f"| **{label}** |" in md and f"{block['parameters']:,}" in md


def test_ablation_rows_appear_in_the_report_and_in_ablate_table(
    cli_run: tuple[subprocess.CompletedProcess, Path], tmp_path: Path
) -> None:
    """What `python -m ablate` does after its harness run: the report again, with its table."""
    import ablate
    from eval.harness import RunResult
    from eval.report import write_report

    _, out = cli_run
    metrics = _metrics(out)
    assert "## Ablation" not in (out / "report.md").read_text(encoding="utf-8")
    block = next(iter(metrics["models"].values()))
    row = {
        "what": "TF-IDF, a setting",
        "backend": "tfidf",
        "dev": {"category_micro_f1": 0.7101, "stance_macro_f1": 0.757},
        "test": {
            "category_micro_f1": block["categories"]["micro_f1"],
            "category_macro_f1": block["categories"]["macro_f1"],
            "stance_macro_f1": block["stance"]["macro_f1"],
            "category_ece": 0.017,
            "stance_ece": 0.051,
        },
        "cv": {
            "category_micro_f1": {"mean": 0.696, "std": 0.026},
            "stance_macro_f1": {"mean": 0.725, "std": 0.012},
        },
        "train_seconds": 40.4,
    }
    metrics["ablation"] = [row, {**row, "what": "no CV", "cv": None}]
    write_report(tmp_path / "r", RunResult(metrics=metrics, errors=[]))
    md = (tmp_path / "r" / "report.md").read_text(encoding="utf-8")
    assert md.index("## Cross-validation") < md.index("## Ablation") < md.index("## Stance")
    line = (
        f"| TF-IDF, a setting | `tfidf` | 0.710 | 0.757 | {block['categories']['micro_f1']:.3f} |"
    )
    assert line in md and "| 0.696 ± 0.026 | 0.725 ± 0.012 | 40 |" in md
    assert "| no CV | `tfidf` |" in md and "| - | - | 40 |" in md
    assert ablate.table(metrics["ablation"]).splitlines()[2] in md
