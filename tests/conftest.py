"""Shared fixtures: real models trained on our real sentences, once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from data.validate import DEFAULT_SPLITS_DIR
from training.common import load_config
from training.train_tfidf import DEFAULT_CONFIG, train


@pytest.fixture(scope="session")
def splits_dir() -> Path:
    return DEFAULT_SPLITS_DIR


@pytest.fixture(scope="session")
def tfidf_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TF-IDF artifact trained on the committed splits (read-only for tests: copy to edit)."""
    out = tmp_path_factory.mktemp("models") / "tfidf"
    train(load_config(DEFAULT_CONFIG), DEFAULT_SPLITS_DIR, out)
    return out
