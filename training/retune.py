"""Tune a trained model's thresholds (and calibration) on dev again, without retraining it.

    python -m training.retune models/indobert [--thresholds global|per_category] [--out DIR]

For changing how decisions are tuned (`thresholds` in every config) on a model that took
minutes or hours to fit: the model's files are copied as they are, temperatures and
thresholds are fitted on the dev split again, and the artifact is saved (in place unless
`--out`) with a new version id and `retuned_from` naming the old one. The dev split must
be the one the model was trained with (checked by its seen-sentence hashes).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from data.records import DataError
from data.validate import DEFAULT_SPLITS_DIR
from model import exitcodes
from model.artifact import ArtifactError
from model.scorer import THRESHOLD_MODES
from training.runner import retune


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.retune", description=__doc__)
    parser.add_argument("model", type=Path, help="a trained model folder")
    parser.add_argument("--thresholds", choices=THRESHOLD_MODES, default="global")
    parser.add_argument("--data", type=Path, default=DEFAULT_SPLITS_DIR, help="splits folder")
    parser.add_argument("--out", type=Path, default=None, help="default: the model folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if not (args.model / "meta.json").is_file():
        print(f"error: {args.model} is not a model folder (no meta.json)", file=sys.stderr)
        return exitcodes.MODEL
    try:
        retune(args.model, args.thresholds, args.data, args.out)
    except ArtifactError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exitcodes.MODEL
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exitcodes.INPUT
    return 0


if __name__ == "__main__":
    sys.exit(main())
