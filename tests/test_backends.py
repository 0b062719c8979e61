"""The backend contract: new backends through the one runner, the registry and predict.py.

Real components throughout: a tiny BERT (IndoBERT's real tokenizer) embeds our real
sentences, scikit-learn fits the heads, and the artifacts load through the registry.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from data.records import DataError
from data.validate import DEFAULT_SPLITS_DIR
from model import calibration, exitcodes
from model.artifact import read_meta
from model.registry import BACKENDS, load_predictor
from model.schema import STANCES
from model.scorer import label_arrays, tune_thresholds
from training import runner
from training.common import load_config, load_dataset
from training.retune import main as main_retune

ROOT = Path(__file__).resolve().parent.parent
SMALL_GRID = ["categories.C_grid=[1.0, 8.0]", "stance.C_grid=[1.0, 8.0]", "cv.folds=3"]


@pytest.fixture(scope="module")
def embed_lr_dir(tmp_path_factory: pytest.TempPathFactory, tiny_encoder: Path) -> Path:
    out = tmp_path_factory.mktemp("models") / "embed_lr"
    module = runner.trainer("embed_lr")
    config = load_config(module.DEFAULT_CONFIG, SMALL_GRID)
    runner.train("embed_lr", config, DEFAULT_SPLITS_DIR, out, encoder=str(tiny_encoder))
    return out


def test_every_trainer_has_a_loader_and_the_contract() -> None:
    assert set(runner.TRAINERS) == set(BACKENDS)
    for name in runner.TRAINERS:
        module = runner.trainer(name)
        assert name == module.NAME
        assert Path(module.DEFAULT_CONFIG).is_file()
        assert callable(module.fit)


def test_embed_lr_heads_equal_scikit_learn_on_the_same_embeddings(embed_lr_dir: Path) -> None:
    """The pickle-free heads in the artifact reproduce scikit-learn's probabilities."""
    from sklearn.linear_model import LogisticRegression

    predictor = load_predictor(embed_lr_dir)
    meta = read_meta(embed_lr_dir)
    splits = load_dataset()
    embed = predictor.backend.embedder.embed
    train_x = embed([r["text"] for r in splits["train"]])
    dev_x = embed([r["text"] for r in splits["dev"]])
    y = [STANCES.index(r["stance"]) for r in splits["train"]]
    ref = LogisticRegression(
        C=meta["chosen"]["stance_C"], class_weight="balanced", max_iter=2000, random_state=13
    ).fit(train_x, y)
    ours = predictor.backend.heads.scores(dev_x).stance
    np.testing.assert_allclose(ours[:, ref.classes_], ref.predict_proba(dev_x), atol=1e-5)
    assert not list(embed_lr_dir.rglob("*.joblib")) and not list(embed_lr_dir.rglob("*.pkl"))


def test_embed_lr_artifact_predicts_through_predict_py(embed_lr_dir: Path) -> None:
    text = "Camat hadir dalam deklarasi pasangan calon bupati."
    proc = subprocess.run(
        [sys.executable, str(ROOT / "predict.py"), "--model", str(embed_lr_dir), text],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    first = json.loads(proc.stdout.splitlines()[0])
    assert first["model"]["name"] == "embed_lr" and first["stance"] in ("pro", "kontra", "netral")


def test_same_seed_gives_the_same_embed_lr_metrics(
    embed_lr_dir: Path, tiny_encoder: Path, tmp_path: Path
) -> None:
    module = runner.trainer("embed_lr")
    config = load_config(module.DEFAULT_CONFIG, SMALL_GRID)
    again = runner.train(
        "embed_lr", config, DEFAULT_SPLITS_DIR, tmp_path / "m", encoder=str(tiny_encoder)
    )
    assert again.meta["dev_metrics"] == read_meta(embed_lr_dir)["dev_metrics"]
    assert again.meta["version"] == read_meta(embed_lr_dir)["version"]


def test_ensemble_scores_are_the_weighted_member_average(
    tiny_encoder: Path, tmp_path: Path
) -> None:
    module = runner.trainer("ensemble")
    small = ["categories.C_grid=[4.0]", "stance.C_grid=[4.0]", "cv.folds=2"]
    config = load_config(module.DEFAULT_CONFIG, ["weight_grid=[0.25, 0.75]"])
    config["member_set"] = {"tfidf": small, "embed_lr": small}
    out = tmp_path / "ensemble"
    runner.train("ensemble", config, DEFAULT_SPLITS_DIR, out, encoder=str(tiny_encoder))
    meta = read_meta(out)
    assert [m["backend"] for m in meta["members"]] == ["tfidf", "embed_lr"]
    w = meta["members"][0]["weight"]
    assert w in (0.25, 0.75) and meta["members"][1]["weight"] == pytest.approx(1 - w)
    predictor = load_predictor(out)
    texts = [r["text"] for r in load_dataset()["test"]][:20]
    parts = predictor.backend.member_scores(texts)
    got = predictor.backend.scores(texts)  # raw; the Predictor calibrates on top
    calibrated = calibration.apply(got, meta["calibration"])
    np.testing.assert_allclose(predictor.scores(texts).categories, calibrated.categories)
    np.testing.assert_allclose(
        got.categories, w * parts[0].categories + (1 - w) * parts[1].categories
    )
    np.testing.assert_allclose(got.stance, w * parts[0].stance + (1 - w) * parts[1].stance)


def test_authored_drop_trains_on_real_sentences_only(tmp_path: Path) -> None:
    module = runner.trainer("tfidf")
    config = load_config(
        module.DEFAULT_CONFIG,
        ['authored="drop"', "categories.C_grid=[4.0]", "stance.C_grid=[4.0]", "cv.folds=2"],
    )
    result = runner.train("tfidf", config, DEFAULT_SPLITS_DIR, tmp_path / "m")
    splits = load_dataset()
    real_train = sum(r["source"] != "authored" for r in splits["train"])
    assert result.meta["train_sentences"] == {
        "real": real_train,
        "authored": 0,
        "authored_weight": 0.0,
    }
    with pytest.raises(ValueError, match="authored must be"):
        bad = load_config(module.DEFAULT_CONFIG, ['authored="sometimes"'])
        runner.train("tfidf", bad, DEFAULT_SPLITS_DIR, tmp_path / "bad")


def test_ensemble_from_trained_members_checks_their_data(
    tfidf_model_dir: Path, embed_lr_dir: Path, tmp_path: Path
) -> None:
    module = runner.trainer("ensemble")
    config = load_config(module.DEFAULT_CONFIG)
    members = [tfidf_model_dir, embed_lr_dir]
    result = runner.train(
        "ensemble", config, DEFAULT_SPLITS_DIR, tmp_path / "e", members_from=members
    )
    assert [m["backend"] for m in result.meta["members"]] == ["tfidf", "embed_lr"]
    texts = [r["text"] for r in load_dataset()["test"]][:10]
    w = result.meta["members"][0]["weight"]
    want = w * load_predictor(tfidf_model_dir).backend.scores(texts).categories
    want += (1 - w) * load_predictor(embed_lr_dir).backend.scores(texts).categories
    np.testing.assert_allclose(
        load_predictor(tmp_path / "e").backend.scores(texts).categories, want
    )
    other = load_config(runner.trainer("tfidf").DEFAULT_CONFIG, ['authored="drop"', "cv.folds=2"])
    other["categories"]["C_grid"] = other["stance"]["C_grid"] = [4.0]
    runner.train("tfidf", other, DEFAULT_SPLITS_DIR, tmp_path / "real-only")
    with pytest.raises(DataError, match="not trained on these train and dev splits"):
        runner.train(
            "ensemble",
            config,
            DEFAULT_SPLITS_DIR,
            tmp_path / "bad",
            members_from=[tmp_path / "real-only", embed_lr_dir],
        )


def test_ensemble_of_three_gives_the_first_the_tuned_weight_and_splits_the_rest(
    tfidf_model_dir: Path, embed_lr_dir: Path, tmp_path: Path
) -> None:
    config = load_config(runner.trainer("ensemble").DEFAULT_CONFIG)
    members = [embed_lr_dir, tfidf_model_dir, embed_lr_dir]
    result = runner.train(
        "ensemble", config, DEFAULT_SPLITS_DIR, tmp_path / "e3", members_from=members
    )
    weights = [m["weight"] for m in result.meta["members"]]
    assert weights[1] == weights[2] == pytest.approx((1 - weights[0]) / 2)
    assert sum(weights) == pytest.approx(1.0)
    texts = [r["text"] for r in load_dataset()["test"]][:10]
    parts = [load_predictor(m).backend.scores(texts) for m in members]
    want = sum(w * p.stance for w, p in zip(weights, parts, strict=True))
    got = load_predictor(tmp_path / "e3").backend.scores(texts).stance
    np.testing.assert_allclose(got, want)
    with pytest.raises(ValueError, match="two or more members"):
        runner.train(
            "ensemble", config, DEFAULT_SPLITS_DIR, tmp_path / "e1", members_from=[embed_lr_dir]
        )


def test_retune_refits_only_the_thresholds_and_keeps_the_model(
    tfidf_model_dir: Path, tmp_path: Path
) -> None:
    old = read_meta(tfidf_model_dir)
    runner.retune(tfidf_model_dir, "per_category", DEFAULT_SPLITS_DIR, tmp_path / "per")
    new = read_meta(tmp_path / "per")
    assert new["config"]["thresholds"] == "per_category"
    assert new["retuned_from"] == old["version"] != new["version"]
    assert new["train_seconds"] >= old["train_seconds"]  # the original fit's time is kept
    texts, y_cat, _ = label_arrays(load_dataset()["dev"])
    before, after = load_predictor(tfidf_model_dir), load_predictor(tmp_path / "per")
    np.testing.assert_array_equal(
        before.backend.scores(texts).categories, after.backend.scores(texts).categories
    )
    expected, _ = tune_thresholds(after.scores(texts).categories, y_cat, mode="per_category")
    assert new["thresholds"] == expected
    assert len(set(expected.values())) > 1
    # and back: the same config as the original, so the same thresholds and version id
    assert main_retune([str(tmp_path / "per"), "--out", str(tmp_path / "back")]) == 0
    back = read_meta(tmp_path / "back")
    assert back["thresholds"] == old["thresholds"] and back["version"] == old["version"]
    assert main_retune([str(tmp_path / "nothing")]) == exitcodes.MODEL


def test_config_without_a_threshold_mode_is_refused_before_fitting(tmp_path: Path) -> None:
    config = load_config(runner.trainer("tfidf").DEFAULT_CONFIG)
    del config["thresholds"]
    with pytest.raises(ValueError, match="thresholds must be one of"):
        runner.train("tfidf", config, DEFAULT_SPLITS_DIR, tmp_path / "m")


def test_ablate_keeps_a_model_tuned_its_way_and_retunes_one_tuned_another(
    tfidf_model_dir: Path, tmp_path: Path
) -> None:
    import ablate

    folder = tmp_path / "kept"
    shutil.copytree(tfidf_model_dir, folder)
    version = read_meta(folder)["version"]
    assert ablate.retuned("kept", folder, "global") is True
    assert read_meta(folder)["version"] == version  # already global: untouched
    assert ablate.retuned("kept", folder, "per_category") is True
    meta = read_meta(folder)
    assert meta["config"]["thresholds"] == "per_category" and meta["retuned_from"] == version
    load_predictor(folder)  # still a verified artifact
