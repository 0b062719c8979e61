"""One training runner for every backend: data, thresholds, dev metrics, meta, artifact, CLI.

A backend's training module only fits. It exposes

- `NAME` (the registry name, also the artifact's `backend`),
- `DEFAULT_CONFIG` (a TOML path),
- `fit(splits, config, out, **options) -> Fitted` (`out`: where the artifact will go, so a
  backend can keep checkpoints beside it),
- optionally `add_arguments(parser)` for options of its own (`--resume`), and `ERRORS`,
  extra exception types mapped to exit codes. A `fit` that takes `encoder` gets the
  `--encoder` option from the runner.

Everything after the fit is the same for every backend and lives here, so a third backend
is its training module, its config and its test: scores on dev, temperature scaling
fitted on dev (`model/calibration.py`), category thresholds tuned on the calibrated dev
scores (the config's `thresholds`: one for all categories, or one each), the dev
summary, provenance in meta.json, the seen-sentence hashes, the verified artifact, the
log line and the exit codes.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import logging
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from data.records import DataError
from data.validate import DEFAULT_SPLITS_DIR
from model import calibration, exitcodes
from model.artifact import base_meta, read_meta, save_artifact, write_seen
from model.paths import REPO_ROOT
from model.predictor import Backend
from model.scorer import THRESHOLD_MODES, dev_metrics, label_arrays, tune_thresholds
from training.common import (
    add_overrides_option,
    authored_weight,
    data_fingerprint,
    load_config,
    load_dataset,
    seed_everything,
    seen_hashes,
)

log = logging.getLogger("training.runner")

# Registered trainers: backend name -> training module (imported on use only).
TRAINERS: dict[str, str] = {
    "tfidf": "training.train_tfidf",
    "indobert": "training.train_transformer",
    "embed_lr": "training.train_embed_lr",
    "ensemble": "training.train_ensemble",
}


@dataclass
class Fitted:
    """What a backend's `fit` hands back to the runner."""

    backend: Backend  # scores dev sentences with the fitted model
    write_files: Callable[[Path], None]  # writes the backend's own files into a folder
    meta: dict = field(default_factory=dict)  # backend-specific meta (choices, history)
    config: dict | None = None  # config as recorded in meta (defaults to the one given)
    card: Callable[[dict], str] | None = None  # model card text from the final meta
    after_save: Callable[[], None] | None = None  # clean-up once the artifact is safe
    calibration: dict | None = None  # temperatures fitted on dev by the runner
    prior_seconds: float = 0.0  # training done before this run (a retuned artifact's fit)


@dataclass
class Result:
    meta: dict
    fitted: Fitted
    out: Path


def trainer(name: str) -> ModuleType:
    """The training module registered under `name`."""
    if name not in TRAINERS:
        raise ValueError(f"unknown backend {name!r}; registered: {', '.join(TRAINERS)}")
    return importlib.import_module(TRAINERS[name])


def apply_authored(splits: dict[str, list[dict]], config: dict) -> dict[str, list[dict]]:
    """The splits a backend sees: authored sentences left out when the config drops them."""
    if authored_weight(config) == 0.0:
        return dict(splits, train=[r for r in splits["train"] if r["source"] != "authored"])
    return splits


def takes_encoder(name: str) -> bool:
    """Whether backend `name` starts from a pretrained encoder (its fit takes `encoder`)."""
    return "encoder" in inspect.signature(trainer(name).fit).parameters


def fit_and_tune(
    name: str,
    splits: dict[str, list[dict]],
    config: dict,
    out: Path,
    fit: Callable[..., Fitted] | None = None,
    **options,
) -> tuple[Fitted, dict[str, float], dict[str, str], dict]:
    """Fit backend `name` on train, tune thresholds on dev: the part CV repeats per fold.

    `fit` replaces the backend's own `fit` (same signature): `training.gpu_sweep` uses it
    to turn weights trained elsewhere into an artifact through the same steps.
    Returns the fitted model, the thresholds, where each came from, and the dev summary.
    """
    module = trainer(name)
    if config.get("thresholds") not in THRESHOLD_MODES:  # checked before a long fit
        raise ValueError(
            f"config key thresholds must be one of {THRESHOLD_MODES}, "
            f"got {config.get('thresholds')!r}"
        )
    seed_everything(config["seed"])
    splits = apply_authored(splits, config)
    if not splits["train"]:
        raise DataError("the train split is empty")
    fitted = (fit or module.fit)(splits, config, Path(out), **options)
    dev_texts, dev_cat, dev_stance = label_arrays(splits["dev"])
    raw = fitted.backend.scores(dev_texts)
    fitted.calibration = calibration.fit(raw, dev_cat, dev_stance)
    dev_scores = calibration.apply(raw, fitted.calibration)
    thresholds, how = tune_thresholds(dev_scores.categories, dev_cat, mode=config["thresholds"])
    metrics = dev_metrics(dev_scores.categories, dev_scores.stance, dev_cat, dev_stance, thresholds)
    return fitted, thresholds, how, metrics


def train(name: str, config: dict, splits_dir: Path, out: Path, **options) -> Result:
    """Fit backend `name`, tune its thresholds on dev and save the verified artifact."""
    module = trainer(name)
    started = time.perf_counter()
    seed = config["seed"]
    splits = apply_authored(load_dataset(splits_dir), config)
    fitted, thresholds, how, metrics = fit_and_tune(name, splits, config, out, **options)
    seconds = time.perf_counter() - started
    meta = base_meta(
        backend=module.NAME,
        thresholds=thresholds,
        data=data_fingerprint(splits_dir),
        config=fitted.config if fitted.config is not None else config,
        seed=seed,
        dev_metrics=metrics,
        extra={
            "calibration": fitted.calibration,
            "threshold_source": how,
            "thresholds_tuned_on": f"dev split ({len(splits['dev'])} real sentences)",
            "train_sentences": {
                "real": sum(r["source"] != "authored" for r in splits["train"]),
                "authored": sum(r["source"] == "authored" for r in splits["train"]),
                "authored_weight": authored_weight(config),
            },
            **fitted.meta,
            "train_seconds": round(fitted.prior_seconds + seconds, 2),
        },
    )
    seen = seen_hashes(splits)

    def write(folder: Path) -> None:
        fitted.write_files(folder)
        write_seen(folder, seen)
        if fitted.card is not None:
            (folder / "README.md").write_text(fitted.card(meta), encoding="utf-8")

    save_artifact(out, write, meta)
    if fitted.after_save is not None:
        fitted.after_save()
    log.info(
        "saved %s (%s, version %s) in %.1f s; dev category micro-F1 %.3f, macro-F1 %.3f, "
        "stance macro-F1 %.3f",
        out,
        module.NAME,
        meta["version"],
        seconds,
        metrics["category_micro_f1"],
        metrics["category_macro_f1"],
        metrics["stance_macro_f1"],
    )
    return Result(meta=meta, fitted=fitted, out=Path(out))


# Meta fields the runner writes itself (base_meta and `train` above): a retune recomputes
# them; every other field of a trained artifact's meta is its backend's own.
RUNNER_META = frozenset(
    {
        "format", "backend", "version", "schema_version", "categories", "stances",
        "thresholds", "training_data", "config", "seed", "libraries", "dev_metrics",
        "created", "calibration", "threshold_source", "thresholds_tuned_on",
        "train_sentences", "train_seconds",
    }
)  # fmt: skip
ARTIFACT_BOOKKEEPING = frozenset({"meta.json", "manifest.json", "seen_sentences.txt"})


def trained_artifact(folder: Path, splits: dict[str, list[dict]]) -> Fitted:
    """An already trained artifact as a `Fitted`: verified (manifest), and trained on these
    splits (its seen-sentence hashes must be exactly this train + dev). Its files are
    copied as they are; `meta` is the artifact's whole meta.json."""
    from model.artifact import read_seen
    from model.registry import load_predictor

    predictor = load_predictor(folder)
    if read_seen(Path(folder)) != set(seen_hashes(splits)):
        raise DataError(f"{folder} was not trained on these train and dev splits")

    def copy(target: Path) -> None:
        for src in sorted(Path(folder).rglob("*")):
            if src.is_file() and src.relative_to(folder).as_posix() not in ARTIFACT_BOOKKEEPING:
                dst = target / src.relative_to(folder)
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dst)

    return Fitted(backend=predictor.backend, write_files=copy, meta=predictor.meta)


def retune(
    folder: Path, mode: str, splits_dir: Path = DEFAULT_SPLITS_DIR, out: Path | None = None
) -> Result:
    """Refit a trained artifact's calibration and thresholds on dev, `thresholds` = `mode`,
    without refitting the model: to change how its decisions are tuned in seconds rather
    than retrain it. Saved to `out` (default: in place, atomically, like any artifact);
    its training time stays that of the original fit."""
    old = read_meta(Path(folder))  # verified, as every artifact read here
    module = trainer(old["backend"])
    config = {**old["config"], "thresholds": mode}

    def fit(splits: dict, config: dict, out_dir: Path, **_) -> Fitted:
        fitted = trained_artifact(folder, splits)
        fitted.meta = {k: v for k, v in old.items() if k not in RUNNER_META}
        fitted.meta["retuned_from"] = old["version"]
        fitted.config = config
        fitted.prior_seconds = float(old.get("train_seconds", 0.0))
        fitted.card = getattr(module, "card_from_meta", None)
        return fitted

    return train(old["backend"], config, splits_dir, Path(out or folder), fit=fit)


def main(name: str, argv: list[str] | None = None) -> int:
    """The `python -m training.train_<backend>` command line, the same for every backend."""
    module = trainer(name)
    parser = argparse.ArgumentParser(
        prog=f"python -m {module.__name__}", description=(module.__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--config", type=Path, default=module.DEFAULT_CONFIG)
    parser.add_argument("--data", type=Path, default=DEFAULT_SPLITS_DIR, help="splits folder")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "models" / name)
    add_overrides_option(parser)
    if takes_encoder(name):
        parser.add_argument(
            "--encoder",
            default=None,
            help="e5-small-offline, a local save_pretrained folder, or a hub id "
            "(default: $NETRALITAS_ENCODER, else indobenchmark/indobert-base-p1)",
        )
    if hasattr(module, "add_arguments"):
        module.add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    prog = module.__name__.rsplit(".", 1)[-1]
    common = {"config", "data", "out", "overrides"}
    options = {k: v for k, v in vars(args).items() if k not in common}
    extra_errors: dict[type[BaseException], int] = getattr(module, "ERRORS", {})
    try:
        config = load_config(args.config, args.overrides)
        train(name, config, args.data, args.out, **options)
    except DataError as exc:
        print(f"{prog}: data error: {exc}", file=sys.stderr)
        return exitcodes.INPUT
    except tuple(extra_errors) as exc:  # backend-specific: encoder missing, ...
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return next(code for kind, code in extra_errors.items() if isinstance(exc, kind))
    except (ValueError, KeyError, TypeError) as exc:
        print(f"{prog}: config error: {exc}", file=sys.stderr)
        return exitcodes.USAGE
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    return 0
