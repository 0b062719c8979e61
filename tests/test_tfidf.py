"""TF-IDF baseline and the shared model layer: predictor contract, thresholds, artifacts."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import TFIDF_TEST_SET

from data.validate import DEFAULT_SPLITS_DIR
from model.artifact import MANIFEST, ArtifactError, read_meta, save_artifact, verify_artifact
from model.registry import load_predictor, resolve_model
from model.schema import CATEGORIES, STANCES
from model.scorer import label_arrays, tune_thresholds
from training.common import load_config, load_dataset
from training.train_tfidf import DEFAULT_CONFIG, train

SENTENCES = [
    "Bawaslu menemukan camat menghadiri deklarasi pasangan calon bupati.",
    "ASN dilarang menjadi anggota partai politik.",
    "Kapolres meminta ASN tidak menyebarkan berita bohong di media sosial.",
    "Cuaca cerah saat debat kandidat digelar di gedung DPRD.",
]


def test_predictor_contract(tfidf_model_dir: Path) -> None:
    predictor = load_predictor(tfidf_model_dir)
    assert predictor.name == "tfidf" and len(predictor.version) == 12
    scores = predictor.scores(SENTENCES)
    assert scores.categories.shape == (4, len(CATEGORIES))
    assert scores.stance.shape == (4, len(STANCES))
    assert ((scores.categories >= 0) & (scores.categories <= 1)).all()
    np.testing.assert_allclose(scores.stance.sum(axis=1), 1.0, atol=1e-6)
    predictions = predictor.predict(SENTENCES)
    assert len(predictions) == 4
    for p, cat_row, st_row in zip(predictions, scores.categories, scores.stance, strict=True):
        assert list(p.category_scores) == list(CATEGORIES)
        assert list(p.stance_probs) == list(STANCES)
        expected = [
            c
            for c, s in zip(CATEGORIES, cat_row, strict=True)
            if s >= predictor.meta["thresholds"][c]
        ]
        assert p.categories == expected
        assert p.stance == STANCES[int(np.argmax(st_row))]
    assert predictor.predict([]) == []


def test_fast_featuriser_is_used_and_equals_scikit_learn(tfidf_model_dir: Path) -> None:
    from model.tfidf import _FastUnion, load_backend

    meta = read_meta(tfidf_model_dir)
    fast = load_backend(tfidf_model_dir, meta)
    plain = load_backend(tfidf_model_dir, meta, fast=False)
    assert isinstance(fast.features, _FastUnion)
    assert not isinstance(plain.features, _FastUnion)
    splits = load_dataset()
    texts = [r["text"] for s in ("train", "dev", "test") for r in splits[s]] + SENTENCES
    want, got = plain.scores(texts), fast.scores(texts)
    np.testing.assert_allclose(got.categories, want.categories, rtol=0, atol=1e-12)
    np.testing.assert_allclose(got.stance, want.stance, rtol=0, atol=1e-12)


def test_thresholds_decide_categories(tfidf_model_dir: Path) -> None:
    predictor = load_predictor(tfidf_model_dir)
    predictor.thresholds = np.zeros(len(CATEGORIES))
    assert all(p.categories == list(CATEGORIES) for p in predictor.predict(SENTENCES))
    predictor.thresholds = np.full(len(CATEGORIES), 1.01)
    assert all(p.categories == [] for p in predictor.predict(SENTENCES))


def test_thresholds_are_tuned_on_dev_and_stored(tfidf_model_dir: Path) -> None:
    meta = read_meta(tfidf_model_dir)
    predictor = load_predictor(tfidf_model_dir)
    dev = load_dataset()["dev"]
    texts, y_cat, _ = label_arrays(dev)
    expected, how = tune_thresholds(predictor.scores(texts).categories, y_cat)
    assert meta["thresholds"] == expected
    assert meta["threshold_source"] == how
    for j, c in enumerate(CATEGORIES):
        if not y_cat[:, j].any():
            assert meta["thresholds"][c] == 0.5 and how[c].startswith("default")


def test_tune_thresholds_hand_example() -> None:
    scores = np.zeros((4, len(CATEGORIES)))
    truth = np.zeros((4, len(CATEGORIES)), dtype=int)
    scores[:, 0] = [0.9, 0.6, 0.3, 0.2]
    truth[:, 0] = [1, 1, 0, 0]  # any threshold in (0.3, 0.6] gives F1 = 1; 0.5 is nearest 0.5
    scores[:, 1] = [0.35, 0.2, 0.15, 0.1]
    truth[:, 1] = [1, 0, 0, 0]  # only thresholds in (0.2, 0.35] give F1 = 1: 0.35 is nearest
    thresholds, how = tune_thresholds(scores, truth)
    assert thresholds["kampanye"] == 0.5
    assert thresholds["media_sosial"] == 0.35
    assert thresholds["politik_uang"] == 0.5 and how["politik_uang"].startswith("default")


def test_retraining_with_the_same_seed_gives_identical_predictions(
    tfidf_model_dir: Path, tmp_path: Path
) -> None:
    again = tmp_path / "again"
    train(load_config(DEFAULT_CONFIG, TFIDF_TEST_SET), DEFAULT_SPLITS_DIR, again)
    a, b = load_predictor(tfidf_model_dir), load_predictor(again)
    texts = [r["text"] for r in load_dataset()["test"]] + SENTENCES
    sa, sb = a.scores(texts), b.scores(texts)
    assert np.array_equal(sa.categories, sb.categories)
    assert np.array_equal(sa.stance, sb.stance)
    assert a.version == b.version
    assert read_meta(again)["dev_metrics"] == read_meta(tfidf_model_dir)["dev_metrics"]


def _copy(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(src, dst)
    return dst


def test_a_flipped_byte_is_refused_before_loading(tfidf_model_dir: Path, tmp_path: Path) -> None:
    folder = _copy(tfidf_model_dir, tmp_path)
    blob = bytearray((folder / "model.joblib").read_bytes())
    blob[len(blob) // 2] ^= 0x01
    (folder / "model.joblib").write_bytes(bytes(blob))
    with pytest.raises(ArtifactError, match=r"model\.joblib does not match its SHA-256"):
        load_predictor(folder)


@pytest.mark.parametrize("damage", ["extra", "missing", "meta", "manifest"])
def test_incomplete_or_edited_folders_are_refused(
    tfidf_model_dir: Path, tmp_path: Path, damage: str
) -> None:
    folder = _copy(tfidf_model_dir, tmp_path)
    if damage == "extra":
        (folder / "evil.pkl").write_bytes(b"x")
        message = "not in the manifest"
    elif damage == "missing":
        (folder / "model.joblib").unlink()
        message = "missing"
    elif damage == "meta":
        meta = json.loads((folder / "meta.json").read_text())
        meta["thresholds"]["kampanye"] = 0.01
        (folder / "meta.json").write_text(json.dumps(meta))
        message = r"meta\.json does not match"
    else:
        (folder / MANIFEST).unlink()
        message = r"no manifest\.json"
    with pytest.raises(ArtifactError, match=message):
        verify_artifact(folder)


def test_saved_files_get_the_default_mode(tmp_path: Path) -> None:
    from model.fsutil import default_file_mode

    def write(folder: Path) -> None:
        (folder / "weights.bin").write_bytes(b"w")
        (folder / "weights.bin").chmod(0o600)  # as safetensors leaves its file

    folder = save_artifact(tmp_path / "m", write, {"format": "x"})
    for name in ("weights.bin", "meta.json", MANIFEST):
        assert (folder / name).stat().st_mode & 0o777 == default_file_mode(), name


def test_save_is_atomic(tfidf_model_dir: Path, tmp_path: Path) -> None:
    folder = _copy(tfidf_model_dir, tmp_path)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    def crash(tmp: Path) -> None:
        (tmp / "model.joblib").write_bytes(b"half a model")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        save_artifact(folder, crash, {"format": "x"})
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["copy"]  # no temporary folder left
    verify_artifact(folder)


def test_unknown_model_name_and_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="unknown model 'bert-besar'"):
        resolve_model("bert-besar")
    with pytest.raises(ArtifactError, match="model folder not found"):
        load_predictor(tmp_path / "nothing")


def test_loading_tfidf_does_not_import_torch(tfidf_model_dir: Path) -> None:
    code = (
        "import sys; from model.registry import load_predictor; "
        f"p = load_predictor({str(tfidf_model_dir)!r}); p.predict(['ASN harus netral.']); "
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_config_overrides(tmp_path: Path) -> None:
    config = load_config(DEFAULT_CONFIG, ["seed=7", "categories.C_grid=[1.0, 2.0]"])
    assert config["seed"] == 7 and config["categories"]["C_grid"] == [1.0, 2.0]
    with pytest.raises(ValueError, match="unknown key"):
        load_config(DEFAULT_CONFIG, ["categories.alpha=1"])
    with pytest.raises(ValueError, match="no config section"):
        load_config(DEFAULT_CONFIG, ["nope.alpha=1"])
    with pytest.raises(ValueError, match=r"section\.key=value"):
        load_config(DEFAULT_CONFIG, ["seed"])


def test_cli_exit_codes(tmp_path: Path) -> None:
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "training.train_tfidf",
            "--out",
            str(tmp_path / "m"),
            "--set",
            "cv.bogus=1",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2 and "unknown key" in bad.stderr
    (tmp_path / "splits").mkdir()
    missing = subprocess.run(
        [
            sys.executable,
            "-m",
            "training.train_tfidf",
            "--out",
            str(tmp_path / "m"),
            "--data",
            str(tmp_path / "splits"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert missing.returncode == 3 and "missing split file" in missing.stderr
    assert not (tmp_path / "m").exists()
