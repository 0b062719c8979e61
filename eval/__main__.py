"""Evaluate trained models on a labelled file and write a report folder.

    python -m eval --model models/tfidf --model models/indobert [--data data/splits/test.jsonl]
                   [--out runs/eval] [--seed 13] [--bootstrap 1000] [--allow-overlap]
                   [--no-timing] [--timing-seconds 2] [--latency-calls 200] [--batch-size 32]
                   [--expect-version VERSION ...] [--expect-sha256 HEX ...]

`--model` takes a backend name (its default folder under `models/`) or a model folder, and
may be repeated. `--expect-version` / `--expect-sha256` (the SHA-256 of manifest.json), given
once per `--model` in the same order, refuse any other model with exit 4 before loading.
`--data` is any JSONL file in the dataset format (default: the test split).
The run folder gets metrics.json, report.md, report.html, errors.jsonl and PNG charts; see
`eval/report.py` for the metrics.json keys.

Exit codes (`model/exitcodes.py`): 0 ok; 3 data error (unreadable or invalid file, overlap
with a model's training data without --allow-overlap, or an output folder that cannot be
written); 2 usage error; 4 model error (missing, incomplete or tampered model folder, not the
pinned model, or a backend that cannot load).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from data.records import DataError
from eval.harness import DEFAULT_DATA, evaluate
from eval.timing import TimingSettings
from model import exitcodes
from model.artifact import ArtifactError
from model.paths import REPO_ROOT

EXIT_OK, EXIT_DATA, EXIT_USAGE, EXIT_MODEL = (
    exitcodes.OK,
    exitcodes.INPUT,
    exitcodes.USAGE,
    exitcodes.MODEL,
)
MIN_RESAMPLES = 100


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m eval",
        description="Evaluate model artifacts on a labelled JSONL file and write a report.",
    )
    parser.add_argument(
        "--model",
        dest="models",
        action="append",
        required=True,
        metavar="NAME_OR_FOLDER",
        help="backend name (tfidf, indobert) or model folder; repeat to compare",
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="labelled JSONL file")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "runs" / "eval")
    parser.add_argument("--seed", type=int, default=13, help="bootstrap seed")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument(
        "--allow-overlap",
        action="store_true",
        help="evaluate even if the file shares sentences with a model's train/dev data",
    )
    parser.add_argument(
        "--cv",
        dest="cv_files",
        action="append",
        default=[],
        type=Path,
        metavar="FILE",
        help="cross-validation result (python -m training.cv) to show beside; repeatable",
    )
    parser.add_argument("--no-timing", action="store_true", help="skip speed measurement")
    defaults = TimingSettings()
    parser.add_argument(
        "--timing-seconds",
        type=float,
        default=defaults.min_seconds,
        help="throughput budget per model in seconds",
    )
    parser.add_argument(
        "--latency-calls",
        type=int,
        default=defaults.latency_calls,
        help="single-sentence calls per model for latency percentiles",
    )
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument(
        "--expect-version",
        action="append",
        default=[],
        metavar="VERSION",
        help="the version of each --model, in order: any other is refused (exit 4)",
    )
    parser.add_argument(
        "--expect-sha256",
        action="append",
        default=[],
        metavar="HEX",
        help="the SHA-256 of each --model's manifest.json, in order: any other is refused",
    )
    return parser


def check_model_pins(args: argparse.Namespace) -> None:
    """Refuse (ArtifactError) a model folder that is not the pinned one, before loading."""
    from model.artifact import check_pins
    from model.registry import resolve_model

    for i, spec in enumerate(args.models):
        check_pins(
            resolve_model(spec),
            version=args.expect_version[i] if args.expect_version else None,
            sha256=args.expect_sha256[i] if args.expect_sha256 else None,
        )


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on bad usage, 0 on --help
        return int(exc.code or 0)
    if args.bootstrap < MIN_RESAMPLES:
        print(f"eval: error: --bootstrap must be at least {MIN_RESAMPLES}", file=sys.stderr)
        return EXIT_USAGE
    if args.timing_seconds <= 0 or args.latency_calls < 1 or args.batch_size < 1:
        print(
            "eval: error: --timing-seconds, --latency-calls and --batch-size must be positive",
            file=sys.stderr,
        )
        return EXIT_USAGE
    for flag, pins in (
        ("--expect-version", args.expect_version),
        ("--expect-sha256", args.expect_sha256),
    ):
        if pins and len(pins) != len(args.models):
            print(f"eval: error: give {flag} once per --model, or not at all", file=sys.stderr)
            return EXIT_USAGE
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    timing = None
    if not args.no_timing:
        timing = TimingSettings(
            batch_size=args.batch_size,
            min_seconds=args.timing_seconds,
            latency_calls=args.latency_calls,
        )
    try:
        check_model_pins(args)
        result = evaluate(
            args.models,
            args.data,
            seed=args.seed,
            n_bootstrap=args.bootstrap,
            allow_overlap=args.allow_overlap,
            timing=timing,
        )
    except DataError as exc:
        print(f"eval: data error: {exc}", file=sys.stderr)
        return EXIT_DATA
    except ArtifactError as exc:
        print(f"eval: model error: {exc}", file=sys.stderr)
        return EXIT_MODEL
    try:
        result.metrics["cross_validation"] = [
            json.loads(f.read_text(encoding="utf-8")) for f in args.cv_files
        ]
    except (OSError, ValueError) as exc:
        print(f"eval: cannot read a --cv file: {exc}", file=sys.stderr)
        return EXIT_DATA

    from eval.report import REPORT_HTML, REPORT_MD, write_report  # matplotlib: only now

    try:
        write_report(args.out, result)
    except OSError as exc:
        print(f"eval: cannot write {args.out}: {exc}", file=sys.stderr)
        return EXIT_DATA
    for warning in result.metrics["warnings"]:
        logging.getLogger("eval").warning("%s", warning)
    print(f"Report: {args.out / REPORT_MD}\nHTML:   {args.out / REPORT_HTML}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
