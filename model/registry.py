"""Backends by name, and loading any model folder through the shared interface.

Backends are registered as import strings and imported only when a folder of that kind is
loaded: `predict.py --model tfidf` must never import torch or transformers.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from model.artifact import ArtifactError, read_meta
from model.paths import REPO_ROOT
from model.predictor import Predictor

# name -> "module:function"; the function takes (folder, meta) and returns a Backend.
BACKENDS: dict[str, str] = {
    "tfidf": "model.tfidf:load_backend",
    "indobert": "model.transformer:load_backend",
    "embed_lr": "model.embed_lr:load_backend",
    "ensemble": "model.ensemble:load_backend",
}


def models_dir() -> Path:
    """Default home of trained models: `$NETRALITAS_MODELS`, else `models/` in the repo."""
    env = os.environ.get("NETRALITAS_MODELS")
    return Path(env) if env else REPO_ROOT / "models"


def resolve_model(name_or_path: str | Path) -> Path:
    """A backend name means its default folder (`models/<name>`); anything else is a path."""
    text = str(name_or_path)
    if text in BACKENDS:
        return models_dir() / text
    path = Path(text)
    if not path.exists() and os.sep not in text and "/" not in text:
        raise ArtifactError(
            f"unknown model {text!r}: give a backend name ({', '.join(BACKENDS)}) "
            "or the path of a trained model folder"
        )
    return path


def load_predictor(name_or_path: str | Path) -> Predictor:
    """Verify a model folder's manifest, then load it with the backend its meta names."""
    folder = resolve_model(name_or_path)
    meta = read_meta(folder)
    target = BACKENDS.get(meta.get("backend", ""))
    if target is None:
        raise ArtifactError(f"{folder}: unknown backend {meta.get('backend')!r}")
    module_name, func_name = target.split(":")
    loader = getattr(importlib.import_module(module_name), func_name)
    return Predictor(backend=loader(folder, meta), meta=meta, path=folder)
