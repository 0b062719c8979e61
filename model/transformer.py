"""The fine-tuned transformer tagger: one encoder, two heads, and its inference backend.

Architecture: a pretrained encoder (`AutoModel`: IndoBERT, the offline e5 or any local
folder) -> mean pooling over the attention mask -> dropout -> two linear heads read the
same sentence vector: a category head (8 logits, one sigmoid each: multi-label) and a
stance head (3 logits, softmax: exactly one stance). Both are trained together with one
joint loss (`training.train_transformer`). One shared encoder rather than two models
because the two tasks read the same cues (who does what to whom, and whether it is
forbidden or reported) and the data is a few hundred sentences: sharing halves the
compute and lets each head's labels regularise the other.

The artifact (`save_artifact` folder) holds `model.safetensors` (the whole tagger's state:
encoder under its `base_model_prefix`, e.g. `bert.*`, plus `category_head.*` and
`stance_head.*`, each tensor stored losslessly packed where it can be, see
`model.packed_weights`), `model.int8.onnx` (the same tagger as an int8 ONNX graph, the
default CPU runtime: `model.onnx_tagger`), the encoder's `config.json` and the tokenizer
files, so it loads with no hub and without the folder it was trained from. `load_backend`
here is the PyTorch runtime (`--runtime torch`), bit-identical to the model that was trained.

Device: CUDA when available, else CPU; `$NETRALITAS_DEVICE` (`cpu`, `cuda`, `cuda:1`)
overrides. Inference batch size: the artifact's, `$NETRALITAS_BATCH_SIZE` overrides.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import PreTrainedConfig, PreTrainedModel
from transformers.utils import ModelOutput

from model.onnx_tagger import (
    DEFAULT_INFERENCE_BATCH,
    ONNX_FILE,
    WEIGHTS_FILE,
    batch_size_of,
    length_sorted_batches,
)
from model.predictor import Scores
from model.schema import CATEGORIES, STANCES

log = logging.getLogger(__name__)

DEVICE_ENV = "NETRALITAS_DEVICE"
_FALLBACK_PREFIX = "encoder_model"  # for an encoder class without a base_model_prefix


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average of the token vectors where the attention mask is 1 (padding excluded).

    Why mean rather than the [CLS] vector: e5 was trained to be read exactly this way
    (its [CLS] token has no trained role and it has no pooler), and for BERT-style
    encoders like IndoBERT mean pooling is at least as good as [CLS] when only a few
    hundred labelled sentences are available (Reimers & Gurevych 2019), because every
    token contributes from the first step instead of one position that must be retrained.
    One pooling for every encoder also keeps the artifact format the same for all of them.
    Computed in float32 even under mixed precision, so the sum over long sentences stays exact.
    """
    weights = mask.unsqueeze(-1).to(torch.float32)
    summed = (hidden.to(torch.float32) * weights).sum(dim=1)
    return summed / weights.sum(dim=1).clamp(min=1.0)


class TaggerConfig(PreTrainedConfig):
    """The tagger's own settings: the encoder's config (as a dict) plus heads and loss.

    The loss weights live here because `forward` returns the joint loss (what
    `transformers.Trainer` expects of a model); they are derived from the train split by
    the trainer and have no effect on inference.
    """

    model_type = "netralitas-tagger"
    encoder: dict | None = None
    encoder_prefix: str = _FALLBACK_PREFIX
    dropout: float = 0.1
    category_weight: float = 1.0
    stance_weight: float = 1.0
    pos_weight: list | None = None  # per category, BCE pos_weight; None = 1
    stance_class_weight: list | None = None  # per stance, CE weight; None = 1


@dataclass
class TaggerOutput(ModelOutput):
    """Joint loss (when labels are given), category logits (B, 8), stance logits (B, 3)."""

    loss: torch.Tensor | None = None
    category_logits: torch.Tensor | None = None
    stance_logits: torch.Tensor | None = None


def encoder_prefix_of(encoder: nn.Module) -> str:
    """Where the encoder sits in the tagger's state: its `base_model_prefix` (`bert`, ...)."""
    prefix = getattr(encoder, "base_model_prefix", "") or _FALLBACK_PREFIX
    reserved = {"encoder", "dropout", "category_head", "stance_head", "config"}
    return _FALLBACK_PREFIX if prefix in reserved else prefix


class TaggerModel(PreTrainedModel):
    """Encoder + mean pooling + dropout + category head (8 logits) + stance head (3 logits).

    A `PreTrainedModel` so that `transformers.Trainer` drives it as it does any HF model:
    `forward(..., labels_cat, labels_stance)` returns the joint loss, BCE-with-logits over
    the categories (pos_weight per category) plus cross-entropy over the stances (class
    weights), weighted by `category_weight` / `stance_weight`.
    """

    config_class = TaggerConfig
    base_model_prefix = "tagger"
    main_input_name = "input_ids"

    def __init__(self, config: TaggerConfig, encoder: nn.Module | None = None) -> None:
        super().__init__(config)
        if encoder is None:
            from transformers import AutoConfig, AutoModel

            enc_cfg = AutoConfig.for_model(**config.encoder)
            encoder = _auto_model(AutoModel.from_config, enc_cfg)
        self.encoder_prefix = config.encoder_prefix
        self.add_module(self.encoder_prefix, encoder)
        hidden = int(encoder.config.hidden_size)
        self.dropout = nn.Dropout(config.dropout)
        self.category_head = nn.Linear(hidden, len(CATEGORIES))
        self.stance_head = nn.Linear(hidden, len(STANCES))
        self.post_init()

    @classmethod
    def wrap(cls, encoder: nn.Module, dropout: float = 0.1, **loss) -> TaggerModel:
        """A tagger around an already built (pretrained) encoder."""
        config = TaggerConfig(
            encoder=encoder.config.to_dict(),
            encoder_prefix=encoder_prefix_of(encoder),
            dropout=dropout,
            **loss,
        )
        return cls(config, encoder)

    def _init_weights(self, module: nn.Module) -> None:
        """Nothing to do: the encoder comes pretrained, the heads keep torch's default init."""

    @property
    def encoder(self) -> nn.Module:
        """The pretrained encoder (registered under its `base_model_prefix`)."""
        return getattr(self, self.encoder_prefix)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        labels_cat: torch.Tensor | None = None,
        labels_stance: torch.Tensor | None = None,
    ) -> TaggerOutput:
        """Logits in float32; the joint loss too when both label tensors are given."""
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask)
        pooled = self.dropout(mean_pool(out.last_hidden_state, attention_mask))
        cat = self.category_head(pooled).float()
        stance = self.stance_head(pooled).float()
        loss = None
        if labels_cat is not None and labels_stance is not None:
            cfg = self.config
            pos_weight = cat.new_tensor(cfg.pos_weight) if cfg.pos_weight else None
            class_weight = (
                stance.new_tensor(cfg.stance_class_weight) if cfg.stance_class_weight else None
            )
            bce = nn.functional.binary_cross_entropy_with_logits(
                cat, labels_cat.float(), pos_weight=pos_weight
            )
            ce = nn.functional.cross_entropy(stance, labels_stance.long(), weight=class_weight)
            loss = self.config.category_weight * bce + self.config.stance_weight * ce
        return TaggerOutput(loss=loss, category_logits=cat, stance_logits=stance)


# --------------------------------------------------------------------------- building


def _auto_model(build, *args, **kwargs) -> nn.Module:
    """Call an `AutoModel` constructor without the pooler where the class has one.

    The pooler ([CLS] -> dense -> tanh) is never used by mean pooling; leaving it out saves
    parameters and avoids "weights not initialised" noise for encoders saved without one.
    Encoder classes that do not take `add_pooling_layer` are built as they come.
    """
    try:
        return build(*args, add_pooling_layer=False, **kwargs)
    except TypeError as exc:
        if "add_pooling_layer" not in str(exc):
            raise
        return build(*args, **kwargs)


def load_pretrained_encoder(source) -> tuple[nn.Module, object]:
    """Encoder and tokenizer from a resolved `model.encoders.EncoderSource`."""
    from transformers import AutoModel, AutoTokenizer

    local = source.local_files_only
    try:
        tokenizer = AutoTokenizer.from_pretrained(source.path, local_files_only=local)
        encoder = _auto_model(AutoModel.from_pretrained, source.path, local_files_only=local)
    except OSError as exc:
        from model.encoders import EncoderError, encoder_advice

        raise EncoderError(
            f"cannot load encoder {source.name!r}: {exc}. {encoder_advice()}"
        ) from exc
    return encoder, tokenizer


def encoder_from_config(folder: Path) -> nn.Module:
    """An encoder with random weights built from the artifact's `config.json` (no hub)."""
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(folder, local_files_only=True)
    return _auto_model(AutoModel.from_config, config)


def pick_device(name: str | None = None) -> torch.device:
    """`name`, else `$NETRALITAS_DEVICE`, else CUDA when available, else CPU."""
    wanted = name or os.environ.get(DEVICE_ENV, "").strip()
    if not wanted:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(wanted)
    except RuntimeError as exc:
        raise ValueError(
            f"${DEVICE_ENV}={wanted!r} is not a torch device (try cpu or cuda)"
        ) from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {wanted!r} requested but CUDA is not available; use cpu")
    return device


def pad_id_of(tokenizer, model: TaggerModel) -> int:
    """The padding id: the tokenizer's, else the encoder config's, else 0."""
    for value in (
        getattr(tokenizer, "pad_token_id", None),
        getattr(model.encoder.config, "pad_token_id", None),
    ):
        if value is not None:
            return int(value)
    return 0


# --------------------------------------------------------------------------- batching


def tokenize(tokenizer, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Token ids with special tokens, truncated to `max_length`; no padding (done per batch)."""
    if not texts:
        return []
    encoded = tokenizer(
        list(texts),
        truncation=True,
        max_length=max_length,
        padding=False,
        return_attention_mask=False,
        return_token_type_ids=False,
    )
    return [list(ids) for ids in encoded["input_ids"]]


def pad_batch(
    seqs: Sequence[Sequence[int]], pad_id: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad to the longest sequence of this batch only (dynamic padding): ids and mask."""
    width = max(len(s) for s in seqs)
    ids = np.full((len(seqs), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(seqs), width), dtype=np.int64)
    for row, seq in enumerate(seqs):
        ids[row, : len(seq)] = seq
        mask[row, : len(seq)] = 1
    non_blocking = device.type == "cuda"
    return (
        torch.from_numpy(ids).to(device, non_blocking=non_blocking),
        torch.from_numpy(mask).to(device, non_blocking=non_blocking),
    )


# --------------------------------------------------------------------------- backend


class TransformerBackend:
    """The `model.predictor.Backend` of the transformer: sentences -> `Scores`."""

    def __init__(
        self,
        model: TaggerModel,
        tokenizer,
        max_length: int,
        batch_size: int = DEFAULT_INFERENCE_BATCH,
        device: torch.device | None = None,
        text_prefix: str = "",
    ) -> None:
        if max_length < 2 or batch_size < 1:
            raise ValueError(f"max_length {max_length} / batch_size {batch_size} too small")
        self.device = device or next(model.parameters()).device
        self.model = model.to(self.device)
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        self.batch_size = int(batch_size)
        self.text_prefix = text_prefix
        self.pad_id = pad_id_of(tokenizer, model)

    def logits(self, sentences: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Raw float32 logits in input order (categories, stance), in eval mode."""
        texts = [self.text_prefix + s for s in sentences]
        encoded = tokenize(self.tokenizer, texts, self.max_length)
        n = len(encoded)
        cat = np.zeros((n, len(CATEGORIES)), dtype=np.float32)
        stance = np.zeros((n, len(STANCES)), dtype=np.float32)
        batches = length_sorted_batches([len(e) for e in encoded], self.batch_size)
        was_training = self.model.training
        self.model.eval()
        show = len(batches) >= 8 and sys.stderr.isatty()
        try:
            with torch.inference_mode():
                for idx in tqdm(batches, desc="scoring", unit="batch", disable=not show):
                    ids, mask = pad_batch([encoded[i] for i in idx], self.pad_id, self.device)
                    out = self.model(ids, mask)
                    cat[idx] = out.category_logits.cpu().numpy()  # restore input order
                    stance[idx] = out.stance_logits.cpu().numpy()
        finally:
            self.model.train(was_training)
        return cat, stance

    def scores(self, sentences: Sequence[str]) -> Scores:
        """Sigmoid category probabilities and softmax stance probabilities, float64."""
        cat, stance = self.logits(sentences)
        cat64 = torch.from_numpy(cat).double()
        st64 = torch.from_numpy(stance).double()
        return Scores(
            categories=torch.sigmoid(cat64).numpy(),
            stance=torch.softmax(st64, dim=1).numpy(),
        )


# --------------------------------------------------------------------------- artifact


def weights_state(model: nn.Module) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The model's state as numpy arrays, each shared tensor once (name -> stored name).

    bfloat16 (which numpy lacks) is stored as float32, which holds it exactly.
    """
    state: dict[str, np.ndarray] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple, str] = {}
    for name, tensor in model.state_dict().items():
        key = (
            tensor.device,
            tensor.untyped_storage().data_ptr(),
            tensor.storage_offset(),
            tuple(tensor.shape),
            tuple(tensor.stride()),
        )
        if key in seen:
            aliases[name] = seen[key]
            continue
        seen[key] = name
        value = tensor.detach().to("cpu")
        if value.dtype == torch.bfloat16:
            value = value.float()
        state[name] = value.contiguous().numpy()
    return state, aliases


def write_model_files(model: TaggerModel, tokenizer, folder: Path) -> None:
    """Weights (packed safetensors), the int8 ONNX graph, encoder config and tokenizer.

    The ONNX export needs `onnxscript`, `onnx` and `onnxruntime`; if it cannot be made (a
    library missing, an encoder the exporter cannot trace, an export that does not match
    torch) the artifact is saved without it, with a warning, and loads with PyTorch.
    """
    from model.packed_weights import write_packed

    folder = Path(folder)
    model.encoder.config.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    state, aliases = weights_state(model)
    packed = write_packed(folder / WEIGHTS_FILE, state, aliases)
    if packed:
        log.info("stored exactly in 4 bits: %s", ", ".join(sorted(packed)))
    try:
        from model.onnx_export import export_int8

        export_int8(model, folder / ONNX_FILE, pad_id_of(tokenizer, model))
    except Exception as exc:  # the artifact is complete without it: torch loads it
        (folder / ONNX_FILE).unlink(missing_ok=True)
        log.warning("no ONNX graph in the artifact (it will load with PyTorch): %s", exc)


def load_state(model: nn.Module, path: Path) -> None:
    """Load a weights file into `model`, strict: packed (current) or plain (older artifacts).

    Tensors are copied straight into the model's parameters and a packed table is decoded
    into its parameter in slices, so loading needs no second copy of the model in memory.
    """
    from safetensors import safe_open

    from model.packed_weights import (
        CODES,
        MOVED_ROWS,
        MOVED_VALUES,
        PARTS,
        SCALES,
        packing_of,
        unpack_q4_into,
    )

    layout = packing_of(path)
    if layout is None:
        from safetensors.torch import load_model

        load_model(model, str(path), strict=True, device="cpu")
        return
    packed, aliases = layout
    params = model.state_dict(keep_vars=True)
    with safe_open(str(path), framework="pt") as handle:
        stored = set(handle.keys())
        plain = {k for k in stored if not k.endswith(PARTS)}
        expected = set(params) - set(aliases) - set(packed)
        if plain != expected:
            raise ValueError(
                f"{path}: weights do not fit the model (missing {sorted(expected - plain)[:5]}, "
                f"unexpected {sorted(plain - expected)[:5]})"
            )
        with torch.no_grad():
            for name in sorted(plain):
                params[name].copy_(handle.get_tensor(name))
            for name in packed:
                target = params[name]
                unpack_q4_into(
                    target.detach().numpy(),
                    handle.get_tensor(name + CODES).numpy(),
                    handle.get_tensor(name + SCALES).numpy(),
                )
                if name + MOVED_ROWS in stored:
                    target[handle.get_tensor(name + MOVED_ROWS)] = handle.get_tensor(
                        name + MOVED_VALUES
                    )
            for alias, name in aliases.items():
                if params[alias] is not params[name]:
                    params[alias].copy_(params[name])


def _no_init():
    """transformers' own switch that skips random initialisation of weights about to be
    loaded (118M random numbers for e5); a no-op where this transformers lacks it."""
    try:
        from transformers.initialization import no_init_weights
    except ImportError:
        return contextlib.nullcontext()
    return no_init_weights()


def load_backend(folder: Path, meta: dict) -> TransformerBackend:
    """The PyTorch runtime: rebuild the tagger from the artifact alone (manifest verified).

    The registry reaches it through `model.onnx_tagger.load_backend` (runtime choice).
    """
    from transformers import AutoTokenizer

    folder = Path(folder)
    device = pick_device()
    with _no_init():
        model = TaggerModel.wrap(encoder_from_config(folder), dropout=0.0)
    load_state(model, folder / WEIGHTS_FILE)
    model.to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    return TransformerBackend(
        model,
        tokenizer,
        max_length=int(meta["max_length"]),
        batch_size=batch_size_of(meta),
        device=device,
        text_prefix=str(meta.get("text_prefix", "")),
    )


def resave(src: Path, dst: Path) -> Path:
    """Re-save a verified artifact in the current format (packed weights, int8 ONNX graph).

    Every other file (meta.json, model card, seen sentences) is copied as it is; the new
    folder gets its own manifest. For artifacts saved before the ONNX export.
    """
    import json
    import shutil

    from model.artifact import MANIFEST, META, read_meta, save_artifact

    src = Path(src)
    meta = read_meta(src)
    backend = load_backend(src, meta)
    own = {WEIGHTS_FILE, ONNX_FILE, MANIFEST, META}

    def write(folder: Path) -> None:
        for path in sorted(src.rglob("*")):
            rel = path.relative_to(src)
            if path.is_file() and rel.as_posix() not in own:
                (folder / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, folder / rel)
        write_model_files(backend.model, backend.tokenizer, folder)

    save_artifact(Path(dst), write, json.loads(json.dumps(meta)))
    return Path(dst)
