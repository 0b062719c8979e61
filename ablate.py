"""The ablation study: train each setting, evaluate it on dev, test and grouped CV, one table.

    python -m ablate [--rows tfidf,embed_lr,...] [--cv-folds 5] [--out runs/ablation]
                     [--encoder e5-small-offline] [--skip-transformer]

Each row is one backend with a few config overrides, trained through the same runner as
everything else. Dev figures come from the artifact (thresholds tuned there), test figures
from one run of the evaluation harness over every row (so the rows share the same data,
bootstrap and report), CV figures from `training.cv` (rows marked `cv`). Writes
`ablation.md` and `ablation.json`, and the harness's full report beside them. Sits at the
top with `pipeline.py` because it drives both `training/` and `eval/`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from model.fsutil import atomic_write_text
from model.paths import REPO_ROOT

log = logging.getLogger("ablate")


def table(results: list[dict]) -> str:
    """The ablation table in Markdown (the same rows as the report's Ablation section)."""
    from eval.report import ABLATION_HEADER, ablation_rows

    lines = [
        "| " + " | ".join(ABLATION_HEADER) + " |",
        "|---|---|" + "---:|" * (len(ABLATION_HEADER) - 2),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in ablation_rows(results)]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Row:
    slug: str
    what: str
    backend: str
    overrides: tuple[str, ...] = ()
    cv: bool = True
    members_from: tuple[str, ...] = ()  # slugs of earlier rows reused as ensemble members
    gpu_setting: str = ""  # trained on a lent GPU by `training.gpu_sweep`, landed here


ROWS: tuple[Row, ...] = (
    Row("tfidf", "TF-IDF + LR (shipped config)", "tfidf"),
    Row("tfidf-real", "TF-IDF, authored dropped", "tfidf", ('authored="drop"',), cv=False),
    Row(
        "tfidf-percat",
        "TF-IDF, C per category (CV F1 of each)",
        "tfidf",
        ("categories.per_category_C=true",),
    ),
    Row("embed_lr", "e5 embeddings (`query: `) + LR", "embed_lr"),
    Row(
        "embed_lr-noprefix",
        "e5 embeddings, no prefix",
        "embed_lr",
        ('model.text_prefix=""',),
        cv=False,
    ),
    Row(
        "embed_lr-real", "e5 embeddings, authored dropped", "embed_lr", ('authored="drop"',), False
    ),
    Row("embed_lr-w03", "e5 embeddings, authored weight 0.3", "embed_lr", ("authored=0.3",), False),
    Row(
        "embed_lr-setfit",
        "e5 + LR after a SetFit-style contrastive stage (2 pairs per sentence, 1 epoch)",
        "embed_lr",
        ("contrastive.pairs_per_sentence=2",),
        cv=False,
    ),
    Row("ensemble", "ensemble: TF-IDF + e5/LR, weight on dev", "ensemble"),
    Row(
        "indobert-query",
        "fine-tuned e5 (`query: `), 6 epochs (earlier hand-written loop)",
        "indobert",
        ('model.text_prefix="query: "', "train.epochs=6"),
        cv=False,
    ),
    Row(
        "indobert-real",
        "fine-tuned e5 (`query: `), authored dropped (hand-written loop)",
        "indobert",
        ('authored="drop"',),
        cv=False,
    ),
    Row(
        "ensemble-indobert",
        "ensemble: TF-IDF + fine-tuned e5 (`query: `), weight on dev",
        "ensemble",
        cv=False,
        members_from=("tfidf", "indobert-query"),
    ),
    Row(
        "indobert-noprefix",
        "fine-tuned e5, no prefix, 6 epochs (hand-written loop)",
        "indobert",
        ('model.text_prefix=""', "train.epochs=6"),
        cv=False,
    ),
    Row(
        "indobert-trainer",
        "fine-tuned e5 (`query: `), 6 epochs, on transformers.Trainer",
        "indobert",
        cv=False,
    ),
    Row(
        "indobert-stance2",
        "fine-tuned e5, CPU config, stance loss weighted x2",
        "indobert",
        ("loss.stance_weight=2.0",),
        cv=False,
    ),
    Row(
        "indobert-poscap3",
        "fine-tuned e5, CPU config, category pos_weight capped at 3 (not 10)",
        "indobert",
        ("loss.pos_weight_cap=3.0",),
        cv=False,
    ),
    Row(
        "indobert-gpu",
        "GPU: fine-tuned e5, word embeddings unfrozen, lr 5e-5, up to 15 epochs",
        "indobert",
        cv=False,
        gpu_setting="full-lr5e-5",
    ),
    Row(
        "indobert-gpu-frozen",
        "GPU: fine-tuned e5, word embeddings frozen, lr 8e-5, 12 epochs (time budget)",
        "indobert",
        cv=False,
        gpu_setting="frozen-lr8e-5",
    ),
    Row(
        "ensemble-indobert-gpu",
        "ensemble: TF-IDF + GPU fine-tuned e5 (unfrozen), weight on dev",
        "ensemble",
        cv=False,
        members_from=("tfidf", "indobert-gpu"),
    ),
    Row(
        "indobert-gpu-seed7",
        "GPU: as `indobert-gpu`, seed 7 (H200, two settings at once)",
        "indobert",
        cv=False,
        gpu_setting="full-lr5e-5-seed7",
    ),
    Row(
        "indobert-gpu-seed21",
        "GPU: as `indobert-gpu`, seed 21 (H200, two settings at once)",
        "indobert",
        cv=False,
        gpu_setting="full-lr5e-5-seed21",
    ),
    Row(
        "indobert-gpu-lr1e-4",
        "GPU: as `indobert-gpu`, lr 1e-4 (H200)",
        "indobert",
        cv=False,
        gpu_setting="full-lr1e-4",
    ),
    Row(
        "indobert-gpu-noauth",
        "GPU: as `indobert-gpu`, authored sentences dropped (H200)",
        "indobert",
        cv=False,
        gpu_setting="full-lr5e-5-no-authored",
    ),
    Row(
        "ensemble-indobert-gpu-seeds",
        "ensemble: TF-IDF + the three seeds of GPU e5 (13, 7, 21; equal shares), weight on dev",
        "ensemble",
        cv=False,
        members_from=("tfidf", "indobert-gpu", "indobert-gpu-seed7", "indobert-gpu-seed21"),
    ),
    Row(
        "tfidf-perthr",
        "TF-IDF, a threshold per category (the earlier default)",
        "tfidf",
        ('thresholds="per_category"',),
        cv=False,
    ),
    Row(
        "indobert-gpu-perthr",
        "GPU: `indobert-gpu` with a threshold per category (the earlier default)",
        "indobert",
        ('thresholds="per_category"',),
        cv=False,
        gpu_setting="full-lr5e-5",
    ),
    Row(
        "ensemble-indobert-gpu-perthr",
        "ensemble: TF-IDF + GPU e5, a threshold per category (the earlier default)",
        "ensemble",
        ('thresholds="per_category"',),
        cv=False,
        members_from=("tfidf", "indobert-gpu"),
    ),
)


def retuned(slug: str, folder: Path, mode: str) -> bool:
    """Keep a trained model, its thresholds retuned if they were tuned another way (models
    saved before the `thresholds` key had one per category). False when it cannot be kept
    (an old artifact whose seen-sentence hashes follow an earlier rule): train it again."""
    from data.records import DataError
    from data.validate import DEFAULT_SPLITS_DIR
    from model.artifact import read_meta
    from training import runner

    if read_meta(folder)["config"].get("thresholds", "per_category") == mode:
        return True
    log.info("=== %s: retuning its thresholds (%s)", slug, mode)
    try:
        runner.retune(folder, mode, DEFAULT_SPLITS_DIR)
    except DataError as exc:
        log.warning("=== %s: cannot retune (%s); training it again", slug, exc)
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default=None, help="comma-separated row slugs (default all)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "runs" / "ablation")
    parser.add_argument("--encoder", default="e5-small-offline")
    parser.add_argument("--cv-folds", type=int, default=5, help="0 skips cross-validation")
    parser.add_argument("--skip-transformer", action="store_true")
    parser.add_argument(
        "--reuse", action="store_true", help="keep models (and CV figures) from an earlier run"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from data.validate import DEFAULT_SPLITS_DIR
    from eval.__main__ import main as evaluate
    from eval.harness import RunResult
    from eval.report import ERRORS_FILE, write_report
    from model.artifact import read_meta
    from training import cv, runner
    from training.common import load_config

    rows = [r for r in ROWS if args.rows is None or r.slug in args.rows.split(",")]
    previous = {}
    if args.reuse and (args.out / "ablation.json").is_file():
        previous = {
            r["slug"]: r for r in json.loads((args.out / "ablation.json").read_text("utf-8"))
        }
    if args.skip_transformer:
        rows = [r for r in rows if r.backend != "indobert"]
    results = []
    for row in rows:
        module = runner.trainer(row.backend)
        config = load_config(module.DEFAULT_CONFIG, list(row.overrides))
        options = {"encoder": args.encoder} if runner.takes_encoder(row.backend) else {}
        if row.members_from:
            options["members_from"] = [args.out / "models" / slug for slug in row.members_from]
        folder = args.out / "models" / row.slug
        if row.gpu_setting and not (folder / "meta.json").is_file():
            log.warning(
                "=== %s: skipped; it is trained on a GPU: `python -m training.gpu_sweep run "
                "--only %s` there, then `... land --out %s` here",
                row.slug,
                row.gpu_setting,
                folder,
            )
            continue
        reuse = args.reuse or row.gpu_setting
        kept = reuse and (folder / "meta.json").is_file() and not row.members_from
        if kept:
            kept = retuned(row.slug, folder, config["thresholds"])
        if not kept:
            # (an ensemble of kept members takes seconds: its weight is chosen again too)
            log.info("=== %s: training %s %s", row.slug, row.backend, list(row.overrides))
            runner.train(row.backend, config, DEFAULT_SPLITS_DIR, folder, **options)
        meta = read_meta(folder)
        result = {
            "slug": row.slug,
            "what": row.what,
            "backend": row.backend,
            "overrides": list(row.overrides),
            "dev": meta["dev_metrics"],
            # a landed GPU model's own train_seconds is the landing; report the GPU's time
            "train_seconds": meta["training"]["seconds"]
            if row.gpu_setting
            else meta["train_seconds"],
            "model": str(folder),
        }
        if row.cv and args.cv_folds and "cv" in previous.get(row.slug, {}):
            result["cv"] = previous[row.slug]["cv"]
            result["cv_seconds"] = previous[row.slug].get("cv_seconds")
        elif row.cv and args.cv_folds:
            started = time.perf_counter()
            log.info("=== %s: %d-fold CV", row.slug, args.cv_folds)
            result["cv"] = cv.cross_validate(
                row.backend, config, DEFAULT_SPLITS_DIR, args.cv_folds, **options
            )["summary"]
            result["cv_seconds"] = round(time.perf_counter() - started, 1)
        results.append(result)
        # kept as it comes, so a later failure loses no CV run (`--reuse` picks it up)
        done = {r["slug"]: r for r in results}
        atomic_write_text(
            args.out / "ablation.json",
            json.dumps([done.get(r.slug) or previous[r.slug] for r in ROWS
                        if r.slug in done or r.slug in previous], indent=2) + "\n",
        )  # fmt: skip
    report = args.out / "eval"
    code = evaluate(
        [
            "--out",
            str(report),
            "--no-timing",
            *[a for r in results for a in ("--model", r["model"])],
        ]
    )
    if code:
        return code
    metrics = json.loads((report / "metrics.json").read_text(encoding="utf-8"))
    for r, block in zip(results, metrics["models"].values(), strict=True):
        r["test"] = {
            "category_micro_f1": block["categories"]["micro_f1"],
            "category_macro_f1": block["categories"]["macro_f1"],
            "stance_macro_f1": block["stance"]["macro_f1"],
            "category_ece": block["calibration"]["category_ece"],
            "stance_ece": block["calibration"]["stance_ece"],
        }
    atomic_write_text(args.out / "ablation.json", json.dumps(results, indent=2) + "\n")
    # the harness's report, again, with the ablation table in it
    metrics["ablation"] = results
    errors = [json.loads(line) for line in (report / ERRORS_FILE).read_text("utf-8").splitlines()]
    write_report(report, RunResult(metrics=metrics, errors=errors))
    text = (
        "# Ablation\n\nDev: the real dev split (thresholds and calibration tuned there). "
        "Test: the real test split. CV: mean ± std over folds grouped by story over all real "
        f"data ({args.cv_folds} folds). Full report: `eval/report.md`.\n\n" + table(results)
    )
    atomic_write_text(args.out / "ablation.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
