"""The GPU sweep's transfer format: pack -> unpack -> train -> float16 shards -> land.

Real tiny BERT (`tiny_encoder`) on real sentences, on the CPU: the same code runs on the
lent GPU. What must hold: the unpacked encoder is the packed one on every row the data
uses, a bundle that lacks a used row is refused, and the landed artifact carries the
trained weights (int8 deltas, float16 heads) with the local encoder's own values on the
other rows.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import write_subset_splits
from safetensors.numpy import load_file, save_file

from model.artifact import read_meta
from model.packed_weights import read_state
from training import gpu_sweep

SETTING = (
    "tiny",
    {
        "model.freeze_word_embeddings": False,
        "train.epochs": 2,
        "train.batch_size": 8,
        "train.lr": 1e-3,
    },
)


@pytest.fixture(scope="module")
def splits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_subset_splits(tmp_path_factory.mktemp("splits"), 80)


@pytest.fixture(scope="module")
def bundle(tiny_encoder: Path, splits: Path, tmp_path_factory) -> Path:
    return gpu_sweep.pack(tiny_encoder, splits, tmp_path_factory.mktemp("bundle") / "b")


@pytest.fixture(scope="module")
def swept(bundle: Path, splits: Path, tmp_path_factory) -> tuple[Path, list[dict]]:
    out = tmp_path_factory.mktemp("sweep-out")
    work = tmp_path_factory.mktemp("sweep-work")
    base = gpu_sweep.runner.trainer("indobert").DEFAULT_CONFIG
    results = gpu_sweep.run(bundle, out, 600.0, splits, base, [SETTING], workdir=work)
    return out, results


def test_unpacked_encoder_equals_the_packed_one_on_used_rows(
    tiny_encoder: Path, bundle: Path, splits: Path, tmp_path: Path
) -> None:
    original = load_file(str(tiny_encoder / "model.safetensors"))
    folder, rows = gpu_sweep.unpack(bundle, tmp_path / "e", splits)
    unpacked = load_file(str(folder / "model.safetensors"))
    assert set(unpacked) == set(original)
    stored = read_state(bundle / gpu_sweep.BUNDLE_WEIGHTS)[gpu_sweep.ROWS]
    np.testing.assert_array_equal(rows, stored)
    table = gpu_sweep.WORD_TABLE
    for name in original:
        if name != table:
            np.testing.assert_array_equal(unpacked[name], original[name])
    np.testing.assert_array_equal(unpacked[table][rows], original[table][rows])
    unused = np.setdiff1d(np.arange(len(original[table])), rows)
    assert len(unused) > len(rows)  # most of the vocabulary is not sent
    assert not unpacked[table][unused].any()


def test_bundle_missing_a_used_row_is_refused(
    tiny_encoder: Path, splits: Path, tmp_path: Path
) -> None:
    few = tmp_path / "few"
    few.mkdir()
    for name in ("train", "dev", "test"):  # one sentence per split: far fewer rows
        src = (splits / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
        (few / f"{name}.jsonl").write_text(src[0] + "\n", encoding="utf-8")
    small = gpu_sweep.pack(tiny_encoder, few, tmp_path / "small")
    with pytest.raises(ValueError, match=r"lacks \d+ word rows"):
        gpu_sweep.unpack(small, tmp_path / "e", splits)


def test_sweep_writes_figures_and_float16_shards_under_the_size_limit(
    swept: tuple[Path, list[dict]],
) -> None:
    out, results = swept
    assert [r["setting"] for r in results] == ["tiny"]
    lines = (out / "sweep.jsonl").read_text().splitlines()
    written = json.loads(lines[0])["dev"]
    for key in ("category_micro_f1", "stance_macro_f1", "category_ece"):
        assert written[key] == pytest.approx(results[0]["dev"][key])
    for split in ("dev", "test"):
        figures = results[0][split]
        assert 0 <= figures["category_ece"] <= 1 and 0 < figures["stance_macro_f1"] <= 1
    shards = sorted(out.glob("weights-*.safetensors"))
    assert shards and all(p.stat().st_size <= 16 * 2**20 for p in shards)
    sent = {k: v for p in shards for k, v in load_file(str(p)).items()}
    assert (out / "rows.npy").is_file()  # the table was trained, so its used rows come back
    table = next(k for k in sent if k.endswith(gpu_sweep.WORD_TABLE))
    assert len(sent[table]) == len(np.load(out / "rows.npy"))
    # the encoder's matrices travel as int8 deltas with a scale per row; the rest in float16
    deltas = {k for k, v in sent.items() if v.dtype == np.int8}
    assert table in deltas and any("attention" in k for k in deltas)
    for name in deltas:
        assert sent[name + gpu_sweep.DELTA_SCALE].shape == (len(sent[name]),)
    assert sent["category_head.weight"].dtype == np.float16
    assert {str(v.dtype) for k, v in sent.items() if k not in deltas} <= {
        "float16",
        "float32",
        "int64",
    }


def test_int8_delta_is_within_half_a_step_of_the_weight() -> None:
    import torch

    generator = torch.Generator().manual_seed(0)
    base = torch.randn(64, 32, generator=generator)
    trained = base + 1e-3 * torch.randn(64, 32, generator=generator)
    trained[3] = base[3]  # an untouched row comes back exactly
    codes, scale = gpu_sweep.quantized_delta(trained, base)
    assert codes.dtype == torch.int8 and scale.shape == (64,)
    back = base + codes.float() * scale[:, None]
    step = scale[:, None].expand_as(back)
    assert bool(((back - trained).abs() <= step / 2 + 1e-7).all())
    assert torch.equal(back[3], trained[3])
    # the error is a small fraction of each row's change (about 1/250 of its largest)
    change = (trained - base).abs().amax(dim=1)
    assert bool(((back - trained).abs().amax(dim=1) <= change / 250 + 1e-7).all())


def test_landed_artifact_has_the_trained_weights_and_the_local_unused_rows(
    swept: tuple[Path, list[dict]], tiny_encoder: Path, splits: Path, tmp_path: Path
) -> None:
    out, results = swept
    model_dir = gpu_sweep.land(out, tmp_path / "landed", splits, encoder=str(tiny_encoder))
    meta = read_meta(model_dir)
    assert meta["training"]["landed_from"] == gpu_sweep.LANDED_FROM
    assert meta["training"]["epochs_run"] == results[0]["training"]["epochs_run"]
    state = read_state(model_dir / "model.safetensors")
    sent = {k: v for p in out.glob("weights-*.safetensors") for k, v in load_file(str(p)).items()}
    table = next(k for k in state if k.endswith(gpu_sweep.WORD_TABLE))
    rows = np.load(out / "rows.npy")
    original = load_file(str(tiny_encoder / "model.safetensors"))
    # used rows: the local encoder's plus the returned delta; the others: the local ones
    delta = sent[table].astype(np.float32) * sent[table + gpu_sweep.DELTA_SCALE][:, None]
    trained = original[gpu_sweep.WORD_TABLE][rows] + delta
    np.testing.assert_allclose(state[table][rows], trained, rtol=1e-6, atol=1e-7)
    assert np.abs(delta).max() > 0  # the table did move
    unused = np.setdiff1d(np.arange(len(original[gpu_sweep.WORD_TABLE])), rows)
    np.testing.assert_array_equal(state[table][unused], original[gpu_sweep.WORD_TABLE][unused])
    layer = next(k for k in sent if "attention" in k and sent[k].dtype == np.int8)
    local = original[layer.split(".", 1)[1]]  # the tagger's name is the encoder's, prefixed
    moved = local + sent[layer].astype(np.float32) * sent[layer + gpu_sweep.DELTA_SCALE][:, None]
    np.testing.assert_allclose(state[layer], moved, rtol=1e-6, atol=1e-7)
    head = "category_head.weight"
    np.testing.assert_array_equal(state[head], sent[head].astype(np.float32))
    # thresholds and calibration are refitted on dev here: same figures up to float16
    for key in ("category_micro_f1", "stance_macro_f1"):
        assert meta["dev_metrics"][key] == pytest.approx(results[0]["dev"][key], abs=0.03)


def test_missing_weight_in_the_shards_is_refused(
    swept: tuple[Path, list[dict]], tiny_encoder: Path, splits: Path, tmp_path: Path
) -> None:
    out, _ = swept
    partial = tmp_path / "partial"
    partial.mkdir()
    for path in out.iterdir():
        (partial / path.name).write_bytes(path.read_bytes())
    shard = sorted(partial.glob("weights-*.safetensors"))[-1]
    tensors = load_file(str(shard))
    dropped = sorted(tensors)[0]
    del tensors[dropped]
    save_file(tensors, str(shard))
    with pytest.raises(ValueError, match="no weights for"):
        gpu_sweep.land(partial, tmp_path / "landed", splits, encoder=str(tiny_encoder))


def test_gpu_config_is_the_sweeps_best_setting_and_the_cpu_picks_the_cpu_config() -> None:
    import pipeline
    from training.common import load_config
    from training.train_transformer import config_problems

    configs = pipeline.CONFIGS
    best = gpu_sweep.setting_config(
        dict(gpu_sweep.SETTINGS)["full-lr5e-5"], configs / "transformer_cpu.toml"
    )
    shipped = load_config(configs / "transformer_e5_gpu.toml")
    assert shipped == best and not config_problems(shipped)
    assert pipeline.transformer_config("cpu").name == "transformer_cpu.toml"
