"""The transformer tagger on ONNX Runtime (int8), without torch or transformers.

Why: on a CPU the int8 graph scores several times faster than the float32 torch model, and
`predict.py --model indobert` on one sentence is dominated by importing torch and
transformers (seconds) rather than by the sentence. This backend needs numpy, `onnxruntime`,
`tokenizers` and `safetensors` only: the tokenizer is the artifact's own `tokenizer.json`
(the file the Hugging Face fast tokenizer wraps, so the ids, special tokens and truncation
are the same), the word vectors come from the artifact's `model.safetensors`
(`model.packed_weights.WordTable`, see `model.onnx_export` for why they are outside the
graph) and the rest is the int8 graph `model.int8.onnx`, written at save time by
`model.transformer.write_model_files` and so covered by the artifact's manifest.

Which runtime loads an `indobert` folder (`load_backend`, the registry's entry point):
`$NETRALITAS_RUNTIME` (`predict.py --runtime`): `onnx`, `torch`, or `auto` (the default):
ONNX when the folder has the graph and `onnxruntime` is installed, else torch with a
warning (artifacts saved before the ONNX export existed). `onnx` on a folder without the
graph is a model error. Only the torch branch imports torch.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from model.artifact import ArtifactError
from model.predictor import Scores
from model.schema import CATEGORIES, STANCES

log = logging.getLogger(__name__)

ONNX_FILE = "model.int8.onnx"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILE = "tokenizer.json"
INPUTS = ("input_ids", "attention_mask", "word_vectors")
OUTPUTS = ("category_logits", "stance_logits")
META_WORD_TABLE = "netralitas.word_table"  # ONNX metadata: state-dict name of the table
META_QUANTIZATION = "netralitas.quantization"
RUNTIME_ENV = "NETRALITAS_RUNTIME"
RUNTIMES = ("auto", "onnx", "torch")
BATCH_SIZE_ENV = "NETRALITAS_BATCH_SIZE"
THREADS_ENV = "NETRALITAS_THREADS"
DEFAULT_INFERENCE_BATCH = 64
# Sentences per ONNX Runtime call. The int8 graph quantises each token on its own
# (`model.onnx_export.quantize_per_token`), so a sentence's scores do not depend on its batch
# mates; 8-32 were fastest on 2 cores (padding stays small with length-sorted batches).
ONNX_BATCH = 16


def runtime_choice() -> str:
    """`$NETRALITAS_RUNTIME` (`auto` when unset); anything else is refused."""
    value = os.environ.get(RUNTIME_ENV, "").strip().lower() or "auto"
    if value not in RUNTIMES:
        raise ValueError(f"${RUNTIME_ENV}={value!r}: use one of {', '.join(RUNTIMES)}")
    return value


def batch_size_of(meta: dict) -> int:
    """Inference batch size: `$NETRALITAS_BATCH_SIZE`, else the artifact's, else 64."""
    raw = os.environ.get(BATCH_SIZE_ENV, "").strip()
    if raw:
        try:
            value = int(raw)
        except ValueError:
            value = 0
        if value < 1:
            raise ValueError(f"${BATCH_SIZE_ENV}={raw!r} must be a positive integer")
        return value
    return int(meta.get("inference", {}).get("batch_size", DEFAULT_INFERENCE_BATCH))


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[np.ndarray]:
    """Indices grouped longest-first, so each batch pads to nearly its own length.

    A stable sort keeps equal-length sentences in input order, which makes the batches (and
    so the float results) a pure function of the input.
    """
    order = np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function in float64, without overflow for large |x|."""
    x = np.asarray(x, dtype=np.float64)
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def softmax(x: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64."""
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def load_tokenizer(folder: Path, max_length: int):
    """The artifact's `tokenizers.Tokenizer`, truncating to `max_length`, never padding."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(Path(folder) / TOKENIZER_FILE))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length)
    return tokenizer


def pad_id_of(folder: Path, tokenizer) -> int:
    """The padding id as the torch backend picks it: the tokenizer's pad token, else the
    encoder config's `pad_token_id`, else 0 (padding is masked out, so it only has to be
    a valid id)."""
    import json

    def read(name: str) -> dict:
        try:
            return json.loads((Path(folder) / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    pad_token = read("tokenizer_config.json").get("pad_token")
    if isinstance(pad_token, dict):
        pad_token = pad_token.get("content")
    if isinstance(pad_token, str) and tokenizer.token_to_id(pad_token) is not None:
        return int(tokenizer.token_to_id(pad_token))
    value = read("config.json").get("pad_token_id")
    return int(value) if value is not None else 0


class OnnxTaggerBackend:
    """The `model.predictor.Backend` of the int8 ONNX tagger: sentences -> `Scores`."""

    def __init__(
        self,
        session,
        tokenizer,
        word_table,
        max_length: int,
        batch_size: int = DEFAULT_INFERENCE_BATCH,
        text_prefix: str = "",
        pad_id: int = 0,
    ) -> None:
        if max_length < 2 or batch_size < 1:
            raise ValueError(f"max_length {max_length} / batch_size {batch_size} too small")
        self.session = session
        self.tokenizer = tokenizer
        self.word_table = word_table
        self.max_length = int(max_length)
        self.batch_size = int(batch_size)
        self.text_prefix = text_prefix
        self.pad_id = int(pad_id)
        self.input_names = {i.name for i in session.get_inputs()}

    def token_ids(self, sentences: Sequence[str]) -> list[list[int]]:
        """Ids with special tokens, prefix prepended, truncated to `max_length`."""
        if not sentences:
            return []
        texts = [self.text_prefix + s for s in sentences]
        return [e.ids for e in self.tokenizer.encode_batch(texts, add_special_tokens=True)]

    def logits(self, sentences: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Raw float32 logits in input order (categories, stance)."""
        encoded = self.token_ids(sentences)
        n = len(encoded)
        cat = np.zeros((n, len(CATEGORIES)), dtype=np.float32)
        stance = np.zeros((n, len(STANCES)), dtype=np.float32)
        batches = length_sorted_batches([len(e) for e in encoded], self.batch_size)
        show = len(batches) >= 8 and sys.stderr.isatty()
        if show:
            from tqdm.auto import tqdm

            batches = tqdm(batches, desc="scoring", unit="batch")
        for idx in batches:
            seqs = [encoded[i] for i in idx]
            width = max(len(s) for s in seqs)
            ids = np.full((len(seqs), width), self.pad_id, dtype=np.int64)
            mask = np.zeros((len(seqs), width), dtype=np.int64)
            for row, seq in enumerate(seqs):
                ids[row, : len(seq)] = seq
                mask[row, : len(seq)] = 1
            feeds = {"input_ids": ids, "attention_mask": mask, "word_vectors": self.word_table(ids)}
            feeds = {k: v for k, v in feeds.items() if k in self.input_names}
            cat[idx], stance[idx] = self.session.run(list(OUTPUTS), feeds)  # input order
        return cat, stance

    def scores(self, sentences: Sequence[str]) -> Scores:
        """Sigmoid category probabilities and softmax stance probabilities, float64."""
        cat, stance = self.logits(sentences)
        return Scores(categories=sigmoid(cat), stance=softmax(stance))


def session_for(path: Path):
    """An ONNX Runtime CPU session whose idle threads sleep instead of spinning.

    Spinning threads are ONNX Runtime's default; on a 2-core machine shared with other work
    they halved throughput (measured: 105 -> 207 sentences/s with spinning off). The thread
    count is ONNX Runtime's default (the cores), or `$NETRALITAS_THREADS`.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    threads = os.environ.get(THREADS_ENV, "").strip()
    if threads:
        if not threads.isdigit() or int(threads) < 1:
            raise ValueError(f"${THREADS_ENV}={threads!r} must be a positive integer")
        options.intra_op_num_threads = int(threads)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def load_onnx_backend(folder: Path, meta: dict) -> OnnxTaggerBackend:
    """The ONNX backend of a verified artifact folder that has the int8 graph."""
    from model.packed_weights import WordTable

    folder = Path(folder)
    session = session_for(folder / ONNX_FILE)
    props = session.get_modelmeta().custom_metadata_map
    table_name = props.get(META_WORD_TABLE)
    if not table_name:
        raise ArtifactError(f"{folder / ONNX_FILE}: no {META_WORD_TABLE!r} in its metadata")
    max_length = int(meta["max_length"])
    tokenizer = load_tokenizer(folder, max_length)
    return OnnxTaggerBackend(
        session,
        tokenizer,
        WordTable(folder / WEIGHTS_FILE, table_name),
        max_length=max_length,
        batch_size=ONNX_BATCH,
        text_prefix=str(meta.get("text_prefix", "")),
        pad_id=pad_id_of(folder, tokenizer),
    )


def _onnxruntime_missing() -> bool:
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is None


def load_backend(folder: Path, meta: dict):
    """Registry entry point for `indobert`: ONNX Runtime by default, torch on request."""
    folder = Path(folder)
    runtime = runtime_choice()
    has_graph = (folder / ONNX_FILE).is_file()
    if runtime == "onnx" and not has_graph:
        raise ArtifactError(
            f"{folder}: no {ONNX_FILE} (saved before the ONNX export); "
            f"use ${RUNTIME_ENV}=torch or re-save it (model.transformer.resave)"
        )
    if runtime == "auto" and not has_graph:
        log.warning("%s has no %s (an older artifact): loading it with PyTorch", folder, ONNX_FILE)
        runtime = "torch"
    elif runtime == "auto" and _onnxruntime_missing():
        log.warning("onnxruntime is not installed: loading %s with PyTorch", folder)
        runtime = "torch"
    if runtime == "torch":
        from model.transformer import load_backend as load_torch_backend

        return load_torch_backend(folder, meta)
    return load_onnx_backend(folder, meta)
