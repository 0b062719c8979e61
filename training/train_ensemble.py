"""Train an ensemble: fit each member backend, then choose the averaging weight on dev.

    python -m training.train_ensemble --encoder e5-small-offline [--out models/ensemble]

Members are fitted by their own training modules (their default configs, this seed and
authored setting, plus any `member_set.<backend>` overrides), so an ensemble never trains
a member differently from the member alone. `--members-from A B` takes two models already
trained on the same splits instead (checked by their seen-sentence hashes) and only
chooses the weight: an ensemble with the fine-tuned transformer then costs seconds.
"""

from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path

import numpy as np

from data.records import DataError
from model import exitcodes
from model.encoders import EncoderError
from model.ensemble import EnsembleBackend, member_dir
from model.scorer import dev_metrics, label_arrays, tune_thresholds
from training import runner
from training.common import load_config, seen_hashes
from training.runner import Fitted

log = logging.getLogger("training.train_ensemble")
NAME = "ensemble"
DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "ensemble.toml"
ERRORS = {EncoderError: exitcodes.MODEL}


def add_arguments(parser) -> None:
    parser.add_argument(
        "--members-from",
        nargs=2,
        type=Path,
        metavar="FOLDER",
        help="use two already trained model folders as the members instead of fitting them",
    )


def choose_weight(parts, dev: list[dict], grid: list[float]) -> tuple[float, list[dict]]:
    """First member's weight maximising (category micro-F1 + stance macro-F1) / 2 on dev."""
    _, y_cat, y_stance = label_arrays(dev)
    table = []
    for w in grid:
        s = EnsembleBackend.combine(parts, np.array([w, 1 - w]))
        thresholds, _ = tune_thresholds(s.categories, y_cat)
        m = dev_metrics(s.categories, s.stance, y_cat, y_stance, thresholds)
        table.append(
            {
                "weight": w,
                "category_micro_f1": m["category_micro_f1"],
                "stance_macro_f1": m["stance_macro_f1"],
            }
        )
    best = max(
        table,
        key=lambda r: (r["category_micro_f1"] + r["stance_macro_f1"], -abs(r["weight"] - 0.5)),
    )
    return float(best["weight"]), table


def _trained_member(folder: Path, splits: dict[str, list[dict]]) -> Fitted:
    """An already trained artifact as a member: verified, and trained on these splits
    (its seen-sentence hashes must be exactly this train + dev)."""
    from model.artifact import read_seen
    from model.registry import load_predictor

    predictor = load_predictor(folder)
    if read_seen(Path(folder)) != set(seen_hashes(splits)):
        raise DataError(f"{folder} was not trained on these train and dev splits")
    skip = {"meta.json", "manifest.json", "seen_sentences.txt"}

    def copy(target: Path) -> None:
        for src in sorted(Path(folder).rglob("*")):
            if src.is_file() and src.relative_to(folder).as_posix() not in skip:
                dst = target / src.relative_to(folder)
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dst)

    return Fitted(backend=predictor.backend, write_files=copy, meta=predictor.meta)


def fit(
    splits: dict[str, list[dict]],
    config: dict,
    out: Path | None = None,
    encoder: str | None = None,
    members_from: list[Path] | None = None,
) -> Fitted:
    """Fit (or, with `members_from`, reuse trained artifacts as) both members, then the weight."""
    names = list(config["members"])
    fitted: list[Fitted] = []
    if members_from:
        fitted = [_trained_member(Path(f), splits) for f in members_from]
        names = [f.meta["backend"] for f in fitted]
    if len(names) != 2:
        raise ValueError(f"an ensemble takes two members, got {names}")
    for name in names[len(fitted) :]:
        module = runner.trainer(name)
        member_config = load_config(
            module.DEFAULT_CONFIG, config.get("member_set", {}).get(name, [])
        )
        member_config |= {"seed": config["seed"], "authored": config.get("authored", "keep")}
        options = {"encoder": encoder} if runner.takes_encoder(name) else {}
        log.info("fitting member %s", name)
        fitted.append(module.fit(splits, member_config, out, **options))
    dev_texts = [r["text"] for r in splits["dev"]]
    parts = [f.backend.scores(dev_texts) for f in fitted]
    w, table = choose_weight(parts, splits["dev"], config["weight_grid"])
    log.info("chosen weight %.2f for %s", w, names[0])
    weights = [w, 1 - w]
    backend = EnsembleBackend([f.backend for f in fitted], weights)

    def write(folder: Path) -> None:
        for i, (name, f) in enumerate(zip(names, fitted, strict=True)):
            target = member_dir(folder, i, name)
            target.mkdir(parents=True)
            f.write_files(target)

    members_meta = [
        {"backend": name, "weight": wt, "meta": f.meta, "config": f.config}
        for name, f, wt in zip(names, fitted, weights, strict=True)
    ]

    def after_save() -> None:
        for f in fitted:
            if f.after_save is not None:
                f.after_save()  # e.g. a transformer member's checkpoints

    # The version id hashes the recorded config: name the members' own versions or configs
    # in it, so two ensembles of different members never share a version.
    identity = [f.meta.get("version") or f.config for f in fitted]
    return Fitted(
        backend=backend,
        write_files=write,
        meta={"members": members_meta, "weight_search": table},
        config={**config, "members": names, "member_identity": identity},
        after_save=after_save,
    )


def main(argv: list[str] | None = None) -> int:
    return runner.main(NAME, argv)


if __name__ == "__main__":
    sys.exit(main())
