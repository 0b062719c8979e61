"""Frozen sentence embeddings + linear heads: the cheap, strong small-data backend.

A pretrained encoder (e5-small by default) embeds each sentence once, the way it was
trained to be read (`query: ` prefix, mean pooling, unit length); two logistic-regression
heads (one-vs-rest for categories, multinomial for stance) sit on top. By default nothing
in the encoder is fitted, so a few thousand labelled sentences cannot overfit it, and
training costs one embedding pass plus seconds of scikit-learn; the optional SetFit-style
stage (`training/contrastive.py`) tunes it first, and the artifact stores it either way.

The artifact stores the encoder (`encoder/`, `save_pretrained` in float16 to halve its
size; computed in float32) and the heads as plain arrays in `heads.safetensors`: no
pickle, and inference needs neither scikit-learn nor a training library.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from model.predictor import Scores
from model.schema import CATEGORIES, STANCES
from model.transformer import (
    _auto_model,
    length_sorted_batches,
    mean_pool,
    pad_batch,
    pick_device,
    tokenize,
)

ENCODER_DIR = "encoder"
HEADS_FILE = "heads.safetensors"


class Embedder:
    """Sentences -> unit-length mean-pooled encoder vectors (float32, input order)."""

    def __init__(
        self, encoder, tokenizer, prefix: str, max_length: int, batch_size: int = 64
    ) -> None:
        self.device = pick_device()
        self.encoder = encoder.to(self.device).eval()
        self.tokenizer = tokenizer
        self.prefix = prefix
        self.max_length = int(max_length)
        self.batch_size = int(batch_size)
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else 0)

    def embed(self, sentences: Sequence[str]) -> np.ndarray:
        encoded = tokenize(self.tokenizer, [self.prefix + s for s in sentences], self.max_length)
        out = np.zeros((len(encoded), int(self.encoder.config.hidden_size)), dtype=np.float32)
        batches = length_sorted_batches([len(e) for e in encoded], self.batch_size)
        show = len(batches) >= 8 and sys.stderr.isatty()
        with torch.inference_mode():
            for idx in tqdm(batches, desc="embedding", unit="batch", disable=not show):
                ids, mask = pad_batch([encoded[i] for i in idx], self.pad_id, self.device)
                hidden = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
                pooled = torch.nn.functional.normalize(mean_pool(hidden, mask), dim=1)
                out[idx] = pooled.cpu().numpy()
        return out


@dataclass
class LinearHeads:
    """Category logits = x @ cat_w.T + cat_b (sigmoid); stance = softmax(x @ st_w.T + st_b)."""

    cat_w: np.ndarray  # (categories, dim)
    cat_b: np.ndarray  # (categories,)
    st_w: np.ndarray  # (stances, dim)
    st_b: np.ndarray  # (stances,)

    def scores(self, x: np.ndarray) -> Scores:
        x = np.asarray(x, dtype=np.float64)
        cat = 1.0 / (1.0 + np.exp(-(x @ self.cat_w.T + self.cat_b)))
        z = x @ self.st_w.T + self.st_b
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return Scores(categories=cat, stance=z / z.sum(axis=1, keepdims=True))

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: np.ascontiguousarray(v, dtype=np.float64) for k, v in vars(self).items()}


class EmbedLRBackend:
    """The `model.predictor.Backend`: embed, then apply the linear heads."""

    def __init__(self, embedder: Embedder, heads: LinearHeads) -> None:
        self.embedder = embedder
        self.heads = heads

    def scores(self, sentences: Sequence[str]) -> Scores:
        return self.heads.scores(self.embedder.embed(sentences))


def save_model(backend: EmbedLRBackend, folder: Path) -> None:
    """Encoder (float16 on disk), tokenizer and heads into an artifact folder."""
    from safetensors.numpy import save_file

    folder = Path(folder)
    enc = folder / ENCODER_DIR
    backend.embedder.encoder.to(dtype=torch.float16).save_pretrained(enc)
    backend.embedder.encoder.to(dtype=torch.float32)
    backend.embedder.tokenizer.save_pretrained(enc)
    save_file(backend.heads.arrays(), str(folder / HEADS_FILE))


def load_backend(folder: Path, meta: dict) -> EmbedLRBackend:
    """Registry entry point: encoder and heads from the (manifest-verified) folder."""
    from safetensors.numpy import load_file
    from transformers import AutoModel, AutoTokenizer

    folder = Path(folder)
    arrays = load_file(str(folder / HEADS_FILE))
    heads = LinearHeads(**{k: arrays[k] for k in ("cat_w", "cat_b", "st_w", "st_b")})
    if heads.cat_w.shape[0] != len(CATEGORIES) or heads.st_w.shape[0] != len(STANCES):
        raise ValueError(f"{folder}: heads do not match the label schema")
    encoder = _auto_model(
        AutoModel.from_pretrained,
        folder / ENCODER_DIR,
        local_files_only=True,
        dtype=torch.float32,
    )
    tokenizer = AutoTokenizer.from_pretrained(folder / ENCODER_DIR, local_files_only=True)
    embedder = Embedder(encoder, tokenizer, meta["text_prefix"], meta["max_length"])
    return EmbedLRBackend(embedder, heads)
