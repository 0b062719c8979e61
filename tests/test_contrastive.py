"""SetFit's first stage for `embed_lr` (`training/contrastive.py`): real tiny BERT, real
sentences. It must pair sentences by their labels and pull same-label pairs together."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import write_subset_splits

from model.artifact import read_meta
from model.embed_lr import Embedder
from model.registry import load_predictor
from model.transformer import load_pretrained_encoder
from training import contrastive, runner
from training.common import load_config, load_dataset

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def splits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_subset_splits(tmp_path_factory.mktemp("splits"), 120)


def test_pairs_follow_the_labels_and_the_seed(splits: Path) -> None:
    records = load_dataset(splits)["train"]
    keys = contrastive.label_keys(records)
    pairs = contrastive.make_pairs(keys, 3, seed=5)
    assert len(pairs) == 3 * len(records)
    assert all((keys[i] == keys[j]) == (t == 1.0) for i, j, t in pairs)
    assert all(i != j for i, j, _ in pairs)
    positives = sum(t for _, _, t in pairs)
    assert 0.2 * len(pairs) < positives <= 2 * len(records)  # one of each two, where possible
    assert pairs == contrastive.make_pairs(keys, 3, seed=5)
    assert pairs != contrastive.make_pairs(keys, 3, seed=6)


def _separation(embedder: Embedder, texts: list[str], pairs: list) -> float:
    x = embedder.embed(texts)
    cos = np.array([x[i] @ x[j] for i, j, _ in pairs])
    target = np.array([t for _, _, t in pairs])
    return float(cos[target == 1].mean() - cos[target == 0].mean())


def test_tuning_pulls_same_label_pairs_together(tiny_encoder: Path, splits: Path) -> None:
    from model.encoders import resolve_encoder

    records = load_dataset(splits)["train"]
    texts = [r["text"] for r in records]
    encoder, tokenizer = load_pretrained_encoder(resolve_encoder(str(tiny_encoder)))
    pairs = contrastive.make_pairs(contrastive.label_keys(records), 4, seed=1)
    before = _separation(Embedder(encoder, tokenizer, "", 64), texts, pairs)
    cfg = {"pairs_per_sentence": 4, "epochs": 3, "batch_size": 16, "lr": 1e-3}
    summary = contrastive.tune(encoder, tokenizer, records, "", 64, cfg, seed=1)
    after = _separation(Embedder(encoder, tokenizer, "", 64), texts, pairs)
    assert summary["pairs"] == 4 * len(records)
    assert summary["loss_per_epoch"][-1] < summary["loss_per_epoch"][0]
    assert after > before + 0.05


def test_embed_lr_with_the_stage_saves_the_tuned_encoder(
    tiny_encoder: Path, splits: Path, tmp_path: Path
) -> None:
    from safetensors.numpy import load_file

    module = runner.trainer("embed_lr")
    config = load_config(
        module.DEFAULT_CONFIG,
        [
            "contrastive.pairs_per_sentence=2",
            "contrastive.lr=1e-3",
            "categories.C_grid=[1.0]",
            "stance.C_grid=[1.0]",
            "cv.folds=2",
        ],
    )
    out = tmp_path / "setfit"
    runner.train("embed_lr", config, splits, out, encoder=str(tiny_encoder))
    meta = read_meta(out)
    assert (
        meta["contrastive"]["pairs"]
        == 2 * meta["train_sentences"]["real"] + 2 * meta["train_sentences"]["authored"]
    )
    original = load_file(str(tiny_encoder / "model.safetensors"))
    saved = load_file(str(out / "encoder" / "model.safetensors"))
    layer = "encoder.layer.0.attention.self.query.weight"
    assert not np.allclose(saved[layer].astype(np.float32), original[layer], atol=1e-3)
    scores = load_predictor(out).backend.scores(["Camat menghadiri deklarasi pasangan calon."])
    assert scores.categories.shape == (1, 8) and np.isclose(scores.stance.sum(), 1.0)
