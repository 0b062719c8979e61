"""Shared fixtures: real models trained on our real sentences, once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from data.records import dumps_jsonl
from data.validate import DEFAULT_SPLITS_DIR
from model.paths import shared_dir
from training.common import load_config, load_dataset
from training.train_tfidf import DEFAULT_CONFIG, train

# A smaller C search than the shipped config: the same code paths at a fraction of the
# fits (the full grid on ~2,500 sentences takes half a minute per model).
TFIDF_TEST_SET = ["categories.C_grid=[2.0, 8.0]", "stance.C_grid=[2.0, 8.0]", "cv.folds=3"]


@pytest.fixture(scope="session", autouse=True)
def one_blas_thread():
    """One BLAS/OpenMP thread per process during the suite.

    Grid searches fit many small models; with default BLAS threading each fit spreads
    over both cores and they fight each other (and any other process), which made the
    suite 2-10x slower on the 2-core machine. torch keeps its own setting.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="session")
def splits_dir() -> Path:
    return DEFAULT_SPLITS_DIR


@pytest.fixture(scope="session")
def tfidf_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TF-IDF artifact trained on the committed splits (read-only for tests: copy to edit)."""
    out = tmp_path_factory.mktemp("models") / "tfidf"
    train(load_config(DEFAULT_CONFIG, TFIDF_TEST_SET), DEFAULT_SPLITS_DIR, out)
    return out


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer BERT (hidden 32, 2 heads, random weights) with IndoBERT's real tokenizer.

    Saved with `save_pretrained`, so it goes through the same loading code as a real local
    encoder, at a size that fine-tunes in seconds on 2 cores.
    """
    tokenizer_dir = shared_dir() / "models" / "indobert-base-p2-tokenizer"
    if not (tokenizer_dir / "tokenizer.json").is_file():
        pytest.skip(f"IndoBERT tokenizer folder missing: {tokenizer_dir} (see ../shared)")
    torch = pytest.importorskip("torch")
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("encoders") / "tiny-bert"
    BertModel(config, add_pooling_layer=False).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def write_subset_splits(folder: Path, train_sentences: int) -> Path:
    """Real split files: every k-th train sentence (about `train_sentences`), all of dev
    and test, so a tiny transformer fine-tunes in seconds on the real label mix."""
    data = load_dataset()
    step = max(1, len(data["train"]) // train_sentences)
    subset = {"train": data["train"][::step], "dev": data["dev"], "test": data["test"]}
    for name, records in subset.items():
        (folder / f"{name}.jsonl").write_text(dumps_jsonl(records), encoding="utf-8")
    return folder
