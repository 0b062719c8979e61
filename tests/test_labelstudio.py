"""Label Studio both ways, on exports shaped as the server writes them (the real server runs
in test_labelstudio_server.py): config, tasks with pre-annotations, every import refusal."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from retrain_support import (
    DATA,
    copy_data,
    export_from_tasks,
    gold_result,
    strip_labels,
    train_articles,
    without_labeller,
)

from data import build, validate
from data.build import PARTIAL_FILE, Paths
from data.labelstudio import (
    build_tasks,
    choices_result,
    export_units,
    labelling_config,
    main,
)
from data.records import read_jsonl
from model.registry import load_predictor
from model.schema import CATEGORIES, STANCES

STRIPPED = train_articles(2)


@pytest.fixture()
def stripped(tmp_path: Path) -> tuple[Path, dict[str, dict]]:
    """A data copy whose first two train articles lost their labels, and those labels."""
    data_dir = copy_data(tmp_path / "data")
    return data_dir, strip_labels(data_dir, STRIPPED)


def _tasks(data_dir: Path) -> list[dict]:
    return build_tasks(export_units(Paths(data_dir), None))


def _gold_export(data_dir: Path, gold: dict[str, dict], path: Path, edit=None) -> Path:
    """An export that answers every task with its gold label; `edit(export)` may spoil it."""
    tasks = _tasks(data_dir)
    export = export_from_tasks(tasks, {k: [{"result": gold_result(r)}] for k, r in gold.items()})
    if edit is not None:
        edit(export)
    path.write_text(json.dumps(export, ensure_ascii=False), encoding="utf-8")
    return path


def _label_files(data_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((data_dir / "labels").iterdir()) if p.is_file()}


def test_config_has_every_label_in_schema_order() -> None:
    root = ET.fromstring(labelling_config())
    choices = {c.get("name"): c for c in root.iter("Choices")}
    assert [c.get("value") for c in choices["categories"]] == list(CATEGORIES)
    assert choices["categories"].get("choice") == "multiple"
    assert [c.get("value") for c in choices["stance"]] == list(STANCES)
    assert choices["stance"].get("choice") == "single-radio"
    assert choices["stance"].get("required") == "true"
    assert {c.get("toName") for c in choices.values()} == {"text"}
    assert root.find("Text").get("value") == "$text"
    assert root.find("HyperText").get("value") == "$context"


def test_export_writes_unlabelled_sentences_with_the_models_decisions(
    stripped, tfidf_model_dir: Path, tmp_path: Path
) -> None:
    data_dir, gold = stripped
    out, config = tmp_path / "tasks.json", tmp_path / "config.xml"
    args = ["export", str(out), "--data-dir", str(data_dir), "--model", str(tfidf_model_dir)]
    assert main([*args, "--config-out", str(config)]) == 0
    tasks = json.loads(out.read_text(encoding="utf-8"))
    assert sorted(t["data"]["sentence_id"] for t in tasks) == sorted(gold)
    assert config.read_text(encoding="utf-8") == labelling_config()
    predictor = load_predictor(tfidf_model_dir)
    decided = predictor.predict([t["data"]["text"] for t in tasks])
    for task, decision in zip(tasks, decided, strict=True):
        assert task["data"]["text"] == gold[task["data"]["sentence_id"]]["text"]
        assert "<mark>" in task["data"]["context"]
        (pred,) = task["predictions"]
        assert pred["model_version"] == f"tfidf@{predictor.version}"
        assert 0.0 <= pred["score"] <= 1.0
        assert pred["result"] == choices_result(decision.categories, decision.stance)


def test_export_of_a_fully_labelled_corpus_is_empty(tmp_path: Path) -> None:
    data_dir = copy_data(tmp_path / "data")
    out = tmp_path / "tasks.json"
    assert main(["export", str(out), "--data-dir", str(data_dir), "--no-predictions"]) == 0
    assert json.loads(out.read_text(encoding="utf-8")) == []


def test_import_restores_the_labels_and_the_build_passes(stripped, tmp_path: Path) -> None:
    data_dir, gold = stripped
    export = _gold_export(data_dir, gold, tmp_path / "export.json")
    assert main(["import", str(export), "--data-dir", str(data_dir)]) == 0
    ours = (data_dir / "labels" / "corpus.jsonl").read_text(encoding="utf-8")
    committed = (DATA / "labels" / "corpus.jsonl").read_text(encoding="utf-8")
    assert without_labeller(ours) == without_labeller(committed)
    assert {r["labeller"] for r in read_jsonl(data_dir / "labels" / "corpus.jsonl")} >= {
        "labelstudio"
    }
    assert build.main(["--data-dir", str(data_dir)]) == 0
    assert validate.main([str(data_dir / "splits")]) == 0
    for split in ("train", "dev", "test"):
        rebuilt = (data_dir / "splits" / f"{split}.jsonl").read_text(encoding="utf-8")
        stored = (DATA / "splits" / f"{split}.jsonl").read_text(encoding="utf-8")
        assert without_labeller(rebuilt) == without_labeller(stored)
    # The same export again changes nothing: every label is already stored.
    before = _label_files(data_dir)
    assert main(["import", str(export), "--data-dir", str(data_dir)]) == 0
    assert _label_files(data_dir) == before


def _set_result(sentence: int, result: list[dict]):
    def edit(export: list[dict]) -> None:
        export[sentence]["annotations"][0]["result"] = result

    return edit


def _change_text(export: list[dict]) -> None:
    export[1]["data"]["text"] = export[1]["data"]["text"] + " (diubah)"


def _duplicate(export: list[dict]) -> None:
    export.append(dict(export[2], id=999))


def _conflict(export: list[dict]) -> None:
    first = export[0]["annotations"][0]
    other = {**first, "id": 998, "result": choices_result(["politik_uang"], "pro")}
    if first["result"] == other["result"]:
        other["result"] = choices_result([], "netral")
    export[0]["annotations"].append(other)


BAD_EXPORTS = {
    "unknown category": (
        _set_result(0, choices_result(["kampanye_hitam"], "kontra")),
        "unknown categories ['kampanye_hitam']",
    ),
    "unknown stance": (_set_result(0, choices_result([], "anti")), "unknown stance ['anti']"),
    "missing stance": (
        _set_result(0, [choices_result(["kampanye"], "pro")[0]]),
        "missing stance",
    ),
    "unknown control": (
        _set_result(
            0, [*choices_result([], "pro"), {**choices_result([], "pro")[0], "from_name": "tone"}]
        ),
        "unknown control 'tone'",
    ),
    "text changed": (_change_text, "text no longer matches the splitter's sentence"),
    "duplicate task": (_duplicate, "duplicate: task 3 is the same sentence"),
    "conflicting annotations": (_conflict, "conflicting annotations"),
}


@pytest.mark.parametrize("case", sorted(BAD_EXPORTS))
def test_a_bad_export_is_refused_whole_and_nothing_is_written(
    case: str, stripped, tmp_path: Path, capsys
) -> None:
    data_dir, gold = stripped
    edit, message = BAD_EXPORTS[case]
    export = _gold_export(data_dir, gold, tmp_path / "export.json", edit)
    before = _label_files(data_dir)
    assert main(["import", str(export), "--data-dir", str(data_dir), "--partial"]) == 3
    err = capsys.readouterr().err
    assert message in err and "nothing written" in err
    assert _label_files(data_dir) == before  # no file touched, no temporary left behind


def test_a_label_that_differs_from_the_stored_one_needs_replace(tmp_path: Path, capsys) -> None:
    data_dir = copy_data(tmp_path / "data")
    article = STRIPPED[0]
    units = export_units(Paths(data_dir), None, [article], include_labelled=True)
    stored = {r["id"]: r for r in read_jsonl(data_dir / "labels" / "corpus.jsonl")}
    answers = {k: [{"result": gold_result(r)}] for k, r in stored.items() if k.startswith(article)}
    first = f"{article}-000"
    flipped = "pro" if stored[first]["stance"] != "pro" else "netral"
    answers[first] = [{"result": choices_result(stored[first]["categories"], flipped)}]
    path = tmp_path / "export.json"
    path.write_text(json.dumps(export_from_tasks(build_tasks(units), answers)), encoding="utf-8")
    before = _label_files(data_dir)
    assert main(["import", str(path), "--data-dir", str(data_dir)]) == 3
    assert "conflicts with the stored label in labels/corpus.jsonl" in capsys.readouterr().err
    assert _label_files(data_dir) == before
    assert main(["import", str(path), "--data-dir", str(data_dir), "--replace"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["replaced"], summary["unchanged"]) == (1, len(answers) - 1)
    now = {r["id"]: r for r in read_jsonl(data_dir / "labels" / "corpus.jsonl")}
    assert now[first]["stance"] == flipped and now[first]["labeller"] == "labelstudio"
    assert {k: v for k, v in now.items() if k != first} == {
        k: v for k, v in stored.items() if k != first
    }


def test_ground_truth_settles_a_conflict_and_agreement_is_recorded(
    stripped, tmp_path: Path
) -> None:
    data_dir, gold = stripped
    tasks = _tasks(data_dir)
    first, second = tasks[0]["data"]["sentence_id"], tasks[1]["data"]["sentence_id"]
    wrong = choices_result(["politik_uang"], "pro")
    answers = {k: [{"result": gold_result(r)}] for k, r in gold.items()}
    answers[first] = [
        {"result": wrong},
        {"result": gold_result(gold[first]), "ground_truth": True},
    ]
    answers[second] = [{"result": gold_result(gold[second])}] * 2
    path = tmp_path / "export.json"
    path.write_text(json.dumps(export_from_tasks(tasks, answers)), encoding="utf-8")
    assert main(["import", str(path), "--data-dir", str(data_dir)]) == 0
    now = {r["id"]: r for r in read_jsonl(data_dir / "labels" / "corpus.jsonl")}
    assert now[first]["labeller"] == "labelstudio:ground_truth"
    assert (now[first]["categories"], now[first]["stance"]) == (
        gold[first]["categories"],
        gold[first]["stance"],
    )
    assert now[second]["labeller"] == "labelstudio:agreed"


def test_partial_import_lets_the_build_leave_the_rest_out(stripped, tmp_path: Path, capsys) -> None:
    data_dir, gold = stripped
    tasks = _tasks(data_dir)
    half = {t["data"]["sentence_id"] for t in tasks[::2]}
    answers = {k: [{"result": gold_result(gold[k])}] for k in half}
    answers[tasks[1]["data"]["sentence_id"]] = [{"result": [], "was_cancelled": True}]
    path = tmp_path / "export.json"
    path.write_text(json.dumps(export_from_tasks(tasks, answers)), encoding="utf-8")
    assert build.main(["--data-dir", str(data_dir)]) == 3  # unlabelled articles: refused
    assert main(["import", str(path), "--data-dir", str(data_dir)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["new"] == len(half)
    assert summary["not_annotated"] == len(tasks) - len(half)
    assert summary["refused_by_build"] == len(tasks) - len(half)
    assert not (data_dir / "labels" / PARTIAL_FILE).exists()
    assert build.main(["--data-dir", str(data_dir)]) == 3
    assert main(["import", str(path), "--data-dir", str(data_dir), "--partial"]) == 0
    listed = json.loads((data_dir / "labels" / PARTIAL_FILE).read_text(encoding="utf-8"))
    assert listed["articles"] == sorted(STRIPPED)
    assert build.main(["--data-dir", str(data_dir)]) == 0
    assert validate.main([str(data_dir / "splits")]) == 0
    in_splits = {
        r["id"]
        for s in ("train", "dev", "test")
        for r in read_jsonl(data_dir / "splits" / f"{s}.jsonl")
        if r["article_id"] in STRIPPED
    }
    assert in_splits == half
    # Labelling the rest takes the articles off the partial list.
    rest = export_from_tasks(tasks, {k: [{"result": gold_result(r)}] for k, r in gold.items()})
    path.write_text(json.dumps(rest), encoding="utf-8")
    assert main(["import", str(path), "--data-dir", str(data_dir)]) == 0
    assert not (data_dir / "labels" / PARTIAL_FILE).exists()
    assert build.main(["--data-dir", str(data_dir)]) == 0


def test_unreadable_exports_and_holdout_material_exit_3(stripped, tmp_path: Path, capsys) -> None:
    data_dir, gold = stripped
    bad = tmp_path / "export.json"
    bad.write_text('{"tasks": []}', encoding="utf-8")
    assert main(["import", str(bad), "--data-dir", str(data_dir)]) == 3
    assert "not a Label Studio JSON export" in capsys.readouterr().err
    bad.write_text("[{", encoding="utf-8")
    assert main(["import", str(bad), "--data-dir", str(data_dir)]) == 3
    assert "not valid JSON" in capsys.readouterr().err
    from data.holdout import _sha, norm_sentence

    listed = next(iter(gold.values()))["text"]
    holdout = tmp_path / "holdout.json"
    holdout.write_text(
        json.dumps({"url_sha256": [], "sentence_sha256": [_sha(norm_sentence(listed))]}),
        encoding="utf-8",
    )
    out = tmp_path / "tasks.json"
    args = ["--data-dir", str(data_dir), "--holdout", str(holdout)]
    assert main(["export", str(out), "--no-predictions", *args]) == 3
    assert "holdout list" in capsys.readouterr().err and not out.exists()
    export = _gold_export(data_dir, gold, tmp_path / "export.json")
    assert main(["import", str(export), *args]) == 3
