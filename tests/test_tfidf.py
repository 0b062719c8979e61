"""TF-IDF baseline and the shared model layer: predictor contract, thresholds, artifacts."""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import TFIDF_TEST_SET

from data.validate import DEFAULT_SPLITS_DIR
from model import tfidf
from model.artifact import MANIFEST, ArtifactError, read_meta, save_artifact, verify_artifact
from model.registry import load_predictor, resolve_model
from model.schema import CATEGORIES, STANCES
from model.scorer import label_arrays, tune_thresholds
from model.tfidf import export_sklearn
from training.common import load_config, load_dataset
from training.train_tfidf import DEFAULT_CONFIG, train

SENTENCES = [
    "Bawaslu menemukan camat menghadiri deklarasi pasangan calon bupati.",
    "ASN dilarang menjadi anggota partai politik.",
    "Kapolres meminta ASN tidak menyebarkan berita bohong di media sosial.",
    "Cuaca cerah saat debat kandidat digelar di gedung DPRD.",
]
ARTIFACT_FILES = [tfidf.CONFIG_FILE, tfidf.ARRAYS_FILE]
WEIGHTS = tfidf.ARRAYS_FILE


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


# --------------------------------------------------------------------------- NumPy scorer


EDGE_SENTENCES = [
    "",
    "a",
    "   ",
    "ΟΔΟΣ ΟΔΟΣ. Straße İstanbul ﬁnal",  # Greek final sigma, ß, dotted I, a ligature
    "ASN\u00a0netral\t\tpilkada\r\n\u2028camat\u3000bupati",  # odd white space
    "a¨b café CAFÉ naïve – “kutip” don't re-run co-operate",  # NFKD gives a space in ¨
    "x" * 300 + " " + "kampanye " * 50,
    "tanda-tangan tanda--tangan -awal akhir- _garis_ 1.250 12/10/2024",
]


def every_sentence() -> list[str]:
    """Every distinct text in the dataset: splits, labelled files, annotation passes."""
    texts = {r["text"] for split in load_dataset().values() for r in split}
    for path in sorted((DEFAULT_SPLITS_DIR.parent / "labels").rglob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip() and "text" in (record := json.loads(line)):
                texts.add(record["text"])
    return sorted(texts) + SENTENCES + EDGE_SENTENCES


@pytest.fixture(scope="module")
def fitted() -> tuple:
    """scikit-learn objects fitted on train exactly as training does, and their export."""
    from training.train_tfidf import fit_sklearn

    texts, y_cat, y_stance = label_arrays(load_dataset()["train"])
    config = load_config(DEFAULT_CONFIG)
    features, categories, stance = fit_sklearn(config, texts, y_cat, y_stance, 2.0, 2.0)
    return features, categories, stance, export_sklearn(features, categories, stance)


def assert_same_features(got, want) -> None:
    """Same sparsity pattern, values within 1e-9 (the float32 values are in fact equal)."""
    want = want.tocsr()
    want.sort_indices()
    assert got.shape == want.shape
    np.testing.assert_array_equal(got.indptr, want.indptr)
    np.testing.assert_array_equal(got.indices, want.indices)
    assert got.data.dtype == want.data.dtype
    np.testing.assert_allclose(got.data, want.data, rtol=0, atol=1e-9)


def test_numpy_scorer_equals_scikit_learn_on_every_sentence(fitted: tuple) -> None:
    features, categories, stance, exported = fitted
    texts = every_sentence()
    assert len(texts) > 4000
    scorer = tfidf.scorer(exported)
    x = features.transform(texts)
    assert_same_features(scorer.features(texts), x)
    got = scorer.scores(texts)
    np.testing.assert_allclose(got.categories, categories.predict_proba(x), rtol=0, atol=1e-9)
    want_stance = np.zeros_like(got.stance)
    want_stance[:, stance.classes_] = stance.predict_proba(x)
    np.testing.assert_allclose(got.stance, want_stance, rtol=0, atol=1e-9)
    # Scores do not depend on the batch a sentence is in (predict.py batches freely).
    part = scorer.scores(texts[100:107] + texts[:1])
    np.testing.assert_array_equal(part.categories[:7], got.categories[100:107])
    np.testing.assert_array_equal(part.stance[-1], got.stance[0])


def test_saved_artifact_is_plain_arrays_and_scores_like_its_sklearn_rebuild(
    tfidf_model_dir: Path,
) -> None:
    from eval.bench import SklearnReference

    names = sorted(p.name for p in tfidf_model_dir.iterdir())
    assert names == sorted([MANIFEST, "meta.json", "seen_sentences.txt", *ARTIFACT_FILES])
    config = json.loads((tfidf_model_dir / tfidf.CONFIG_FILE).read_text())
    assert config["format"] == tfidf.FORMAT
    assert [p["analyzer"] for p in config["features"]] == ["word", "char_wb"]
    assert config["features"][0]["token_pattern"] == r"(?u)\b\w[\w-]*\b"
    predictor = load_predictor(tfidf_model_dir)
    reference = SklearnReference(predictor.backend)
    texts = [r["text"] for s in ("dev", "test") for r in load_dataset()[s]] + EDGE_SENTENCES
    got, want = predictor.backend.scores(texts), reference.scores(texts)
    np.testing.assert_allclose(got.categories, want.categories, rtol=0, atol=1e-9)
    np.testing.assert_allclose(got.stance, want.stance, rtol=0, atol=1e-9)
    assert_same_features(predictor.backend.features(texts), reference.features.transform(texts))


@pytest.mark.parametrize(
    "settings",
    [
        {"analyzer": "word", "strip_accents": "unicode", "lowercase": False},
        {"analyzer": "word", "ngram_range": (1, 3), "token_pattern": r"(?u)\b\w\w+\b"},
        {"analyzer": "char", "ngram_range": (1, 3), "strip_accents": "ascii"},
        {"analyzer": "char_wb", "ngram_range": (3, 5), "binary": True, "norm": None},
        {"analyzer": "char_wb", "ngram_range": (1, 2), "use_idf": False, "sublinear_tf": False},
        {"analyzer": "word", "dtype": np.float64, "sublinear_tf": True, "smooth_idf": False},
    ],
    ids=lambda settings: "-".join(f"{k}={v}" for k, v in settings.items()),
)
def test_vectoriser_settings_transform_like_scikit_learn(settings: dict) -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts = every_sentence()
    vec = TfidfVectorizer(**settings).fit([r["text"] for r in load_dataset()["train"]])
    params, arrays = tfidf._export_vectorizer("part", vec)
    part = tfidf.scorer(
        tfidf.Exported(
            {**_heads_config(), "features": [params]},
            {**arrays, **_zero_heads(len(vec.vocabulary_))},
        )
    ).parts[0]
    sample = texts[::3] + EDGE_SENTENCES
    assert [part.analyze(t) for t in sample[:200]] == [
        vec.build_analyzer()(t) for t in sample[:200]
    ]
    assert_same_features(part.transform(sample), vec.transform(sample))


def test_terms_with_a_newline_round_trip_and_plain_vocabularies_keep_their_layout(
    tmp_path: Path,
) -> None:
    """A sentence can span a line break (a date fragment joined to the sentence before it,
    as one training sentence of v2.2 does), so a `char` analyzer learns terms holding a
    newline, the separator of the stored vocabulary."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    docs = ["tersebut,\nSabtu (07/09/2024).", "Bawaslu memeriksa kades."]
    for analyzer, has_newline in (("char", True), ("char_wb", False)):
        vec = TfidfVectorizer(analyzer=analyzer, ngram_range=(1, 3)).fit(docs)
        by_index = sorted(vec.vocabulary_, key=vec.vocabulary_.get)
        params, arrays = tfidf._export_vectorizer("part", vec)
        assert ("part.term_ends" in arrays) is has_newline
        if not has_newline:
            assert arrays["part.terms"].tobytes() == "\n".join(by_index).encode()
        exported = tfidf.Exported(
            {**_heads_config(), "features": [params]},
            {**arrays, **_zero_heads(len(vec.vocabulary_))},
        )
        folder = tmp_path / analyzer
        folder.mkdir()
        tfidf.save_model(exported, folder)
        part = tfidf.scorer(tfidf.read_model(folder)).parts[0]
        assert part.terms == by_index
        assert_same_features(part.transform(docs), vec.transform(docs))


def _heads_config() -> dict:
    return {
        "format": tfidf.FORMAT,
        "categories": {"names": list(CATEGORIES), "constant": [None] * len(CATEGORIES)},
        "stance": {"classes": [0, 1, 2], "names": list(STANCES)},
    }


def _zero_heads(n_features: int) -> dict[str, np.ndarray]:
    return {
        "categories.weights": np.zeros((n_features, len(CATEGORIES))),
        "categories.intercept": np.zeros(len(CATEGORIES)),
        "stance.weights": np.zeros((n_features, len(STANCES)), dtype=np.float32),
        "stance.intercept": np.zeros(len(STANCES), dtype=np.float32),
    }


def test_constant_categories_and_a_binary_stance_score_like_scikit_learn() -> None:
    """Edge heads: a category with one class in train, a stance missing from train."""
    import warnings

    from training.train_tfidf import fit_sklearn

    texts, y_cat, y_stance = label_arrays(load_dataset()["train"])
    keep = y_stance != STANCES.index("netral")
    texts = [t for t, k in zip(texts, keep, strict=True) if k]
    y_cat, y_stance = y_cat[keep].copy(), y_stance[keep]
    y_cat[:, 3], y_cat[:, 5] = 0, 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Label 5 is present in all ..."
        features, categories, stance = fit_sklearn(
            load_config(DEFAULT_CONFIG), texts, y_cat, y_stance, 2.0, 2.0
        )
    exported = export_sklearn(features, categories, stance)
    assert exported.config["categories"]["constant"][3:6] == [0.0, None, 1.0]
    scorer = tfidf.scorer(exported)
    sample = every_sentence()[::4]
    x = features.transform(sample)
    got = scorer.scores(sample)
    np.testing.assert_allclose(got.categories, categories.predict_proba(x), rtol=0, atol=1e-9)
    assert (got.categories[:, 3] == 0).all() and (got.categories[:, 5] == 1).all()
    assert (got.stance[:, STANCES.index("netral")] == 0).all()
    # scipy's float32 expit (C expf) and NumPy's exp may differ in the last bit: 6e-8.
    np.testing.assert_allclose(got.stance[:, :2], stance.predict_proba(x), rtol=0, atol=1e-7)


def test_settings_the_scorer_cannot_reproduce_are_refused_at_export(fitted: tuple) -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts = [r["text"] for r in load_dataset()["train"]][:200]
    for settings, message in [
        ({"stop_words": ["dan", "yang"]}, "stop_words is set"),
        ({"norm": "l1"}, "norm='l1'"),
        ({"analyzer": str.split}, "analyzer="),
        ({"preprocessor": str.upper}, "preprocessor is set"),
    ]:
        vec = TfidfVectorizer(**settings).fit(texts)
        with pytest.raises(ValueError, match=message):
            tfidf._export_vectorizer("part", vec)
    features, _, stance, _ = fitted
    with pytest.raises(ValueError, match="multi-label OneVsRestClassifier"):
        export_sklearn(features, stance, stance)


def test_an_old_pickled_model_is_refused_without_unpickling(
    tfidf_model_dir: Path, tmp_path: Path
) -> None:
    """A joblib artifact of the old format: a clear refusal, and its pickle never runs."""
    marker = tmp_path / "pickle-ran"
    folder = tmp_path / "old"

    class Evil:
        def __reduce__(self):
            return (Path.mkdir, (marker,))

    def write(target: Path) -> None:
        (target / tfidf.LEGACY_FILE).write_bytes(pickle.dumps(Evil()))
        shutil.copy(tfidf_model_dir / "seen_sentences.txt", target)

    save_artifact(folder, write, read_meta(tfidf_model_dir))
    with pytest.raises(ArtifactError, match=r"joblib pickle.*never loaded.*Retrain"):
        load_predictor(folder)
    assert not marker.exists()


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
    assert meta["config"]["thresholds"] == "global"  # the shipped default: one for all
    assert len(set(meta["thresholds"].values())) == 1
    assert set(how.values()) == {"tuned: one for all categories"}


def test_tune_thresholds_hand_example() -> None:
    scores = np.zeros((4, len(CATEGORIES)))
    truth = np.zeros((4, len(CATEGORIES)), dtype=int)
    scores[:, 0] = [0.9, 0.6, 0.3, 0.2]
    truth[:, 0] = [1, 1, 0, 0]  # any threshold in (0.3, 0.6] gives F1 = 1; 0.5 is nearest 0.5
    scores[:, 1] = [0.35, 0.2, 0.15, 0.1]
    truth[:, 1] = [1, 0, 0, 0]  # only thresholds in (0.2, 0.35] give F1 = 1: 0.35 is nearest
    thresholds, how = tune_thresholds(scores, truth, mode="per_category")
    assert thresholds["kampanye"] == 0.5
    assert thresholds["media_sosial"] == 0.35
    assert thresholds["politik_uang"] == 0.5 and how["politik_uang"].startswith("default")
    # one threshold for all: only (0.3, 0.35] is right for both columns at once
    thresholds, how = tune_thresholds(scores, truth)
    assert set(thresholds.values()) == {0.35}
    assert how["politik_uang"] == "tuned: one for all categories"
    thresholds, how = tune_thresholds(scores, np.zeros_like(truth))
    assert set(thresholds.values()) == {0.5} and how["kampanye"].startswith("default")
    with pytest.raises(ValueError, match="thresholds must be one of"):
        tune_thresholds(scores, truth, mode="per-label")


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
    blob = bytearray((folder / WEIGHTS).read_bytes())
    blob[len(blob) // 2] ^= 0x01
    (folder / WEIGHTS).write_bytes(bytes(blob))
    with pytest.raises(ArtifactError, match=r"tfidf\.safetensors does not match its SHA-256"):
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
        (folder / WEIGHTS).unlink()
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
        (tmp / WEIGHTS).write_bytes(b"half a model")
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


def test_loading_tfidf_imports_neither_torch_nor_scikit_learn(tfidf_model_dir: Path) -> None:
    heavy = ("torch", "transformers", "sklearn", "joblib", "scipy")
    code = (
        "import sys; from model.registry import load_predictor; "
        f"p = load_predictor({str(tfidf_model_dir)!r}); p.predict(['ASN harus netral.']); "
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))"
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


def test_per_category_c_keeps_each_categorys_own_fit() -> None:
    """Category j of a per-category-C model is exactly the one-vs-rest fit with C_j."""
    from training.train_tfidf import choose_c, fit_sklearn

    data = load_dataset()["train"][::4]
    texts, y_cat, y_stance = label_arrays(data)
    groups = [r["story_id"] for r in data]
    config = load_config(
        DEFAULT_CONFIG,
        [
            "categories.C_grid=[0.5, 8.0]",
            "stance.C_grid=[2.0]",
            "cv.folds=3",
            "categories.per_category_C=true",
        ],
    )
    c_cat, _, table = choose_c(config, texts, y_cat, y_stance, groups)
    for name, c in zip(CATEGORIES, c_cat, strict=True):
        by_c = table["category_f1_by_C"][name]
        assert by_c[str(c)] == max(by_c.values())  # each category took its best CV F1
    mixed = [0.5, 8.0] * 4
    _, categories, _ = fit_sklearn(config, texts, y_cat, y_stance, mixed, 2.0)
    for c in (0.5, 8.0):
        _, alone, _ = fit_sklearn(config, texts, y_cat, y_stance, c, 2.0)
        for j, cj in enumerate(mixed):
            if cj == c:
                np.testing.assert_array_equal(
                    categories.estimators_[j].coef_, alone.estimators_[j].coef_
                )
    assert not np.array_equal(categories.estimators_[0].coef_, alone.estimators_[0].coef_)
