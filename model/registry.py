"""Backends by name, and loading any model folder through the shared interface.

Backends are registered as import strings and imported only when a folder of that kind is
loaded: `predict.py --model tfidf` must never import torch or transformers. An `indobert`
folder loads through `model.onnx_tagger`, which picks the runtime (int8 ONNX by default,
PyTorch on request or for older folders) and imports torch only for the latter.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import Iterator
from pathlib import Path

from model.artifact import ArtifactError, read_meta
from model.onnx_tagger import RUNTIME_ENV, RUNTIMES
from model.paths import REPO_ROOT
from model.predictor import Predictor

# name -> "module:function"; the function takes (folder, meta) and returns a Backend.
BACKENDS: dict[str, str] = {
    "tfidf": "model.tfidf:load_backend",
    "indobert": "model.onnx_tagger:load_backend",
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


@contextlib.contextmanager
def runtime(name: str | None) -> Iterator[None]:
    """`$NETRALITAS_RUNTIME` set to `name` for the block (`None`: left as it is)."""
    if name is None:
        yield
        return
    if name not in RUNTIMES:
        raise ValueError(f"runtime {name!r}: use one of {', '.join(RUNTIMES)}")
    before = os.environ.get(RUNTIME_ENV)
    os.environ[RUNTIME_ENV] = name
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(RUNTIME_ENV, None)
        else:
            os.environ[RUNTIME_ENV] = before


def load_predictor(name_or_path: str | Path, runtime_name: str | None = None) -> Predictor:
    """Verify a model folder's manifest, then load it with the backend its meta names.

    `runtime_name` (`auto`, `onnx`, `torch`) overrides `$NETRALITAS_RUNTIME` for this load;
    it matters to transformer folders only (and to ensembles holding one).
    """
    folder = resolve_model(name_or_path)
    meta = read_meta(folder)
    target = BACKENDS.get(meta.get("backend", ""))
    if target is None:
        raise ArtifactError(f"{folder}: unknown backend {meta.get('backend')!r}")
    module_name, func_name = target.split(":")
    loader = getattr(importlib.import_module(module_name), func_name)
    with runtime(runtime_name):
        backend = loader(folder, meta)
    return Predictor(backend=backend, meta=meta, path=folder)
