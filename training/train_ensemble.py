"""Train an ensemble: fit each member backend, then choose the averaging weight on dev.

    python -m training.train_ensemble --encoder e5-small-offline [--out models/ensemble]

Members are fitted by their own training modules (their default configs, this seed and
authored setting, plus any `member_set.<backend>` overrides), so an ensemble never trains
a member differently from the member alone. `--members-from A B [C ...]` takes models
already trained on the same splits instead (checked by their seen-sentence hashes) and only
chooses the weight: an ensemble with the fine-tuned transformer then costs seconds.

With more than two members, the first gets the weight chosen on dev and the others share
the rest equally: `tfidf` beside several seeds of one transformer averages the seeds (whose
differences are noise, so nothing is gained by weighting them apart on 710 dev sentences)
and tunes one number, as for two members.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np

from model import exitcodes
from model.encoders import EncoderError
from model.ensemble import EnsembleBackend, member_dir
from model.scorer import dev_metrics, label_arrays, tune_thresholds
from training import runner
from training.common import load_config
from training.runner import Fitted

log = logging.getLogger("training.train_ensemble")
NAME = "ensemble"
DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "ensemble.toml"
ERRORS = {EncoderError: exitcodes.MODEL}


def add_arguments(parser) -> None:
    parser.add_argument(
        "--members-from",
        nargs="+",
        type=Path,
        metavar="FOLDER",
        help="use two or more already trained model folders as the members instead of "
        "fitting them (the first gets the tuned weight, the others share the rest)",
    )


def member_weights(first: float, n: int) -> list[float]:
    """`first` for the first member; the other n - 1 share the rest equally."""
    return [first] + [(1 - first) / (n - 1)] * (n - 1)


def choose_weight(
    parts, dev: list[dict], grid: list[float], mode: str = "global"
) -> tuple[float, list[dict]]:
    """First member's weight maximising (category micro-F1 + stance macro-F1) / 2 on dev."""
    _, y_cat, y_stance = label_arrays(dev)
    table = []
    for w in grid:
        s = EnsembleBackend.combine(parts, np.array(member_weights(w, len(parts))))
        thresholds, _ = tune_thresholds(s.categories, y_cat, mode=mode)
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


def fit(
    splits: dict[str, list[dict]],
    config: dict,
    out: Path | None = None,
    encoder: str | None = None,
    members_from: list[Path] | None = None,
) -> Fitted:
    """Fit (or, with `members_from`, reuse trained artifacts as) the members, then the weight."""
    names = list(config["members"])
    fitted: list[Fitted] = []
    if members_from:
        fitted = [runner.trained_artifact(Path(f), splits) for f in members_from]
        names = [f.meta["backend"] for f in fitted]
    if len(names) < 2:
        raise ValueError(f"an ensemble takes two or more members, got {names}")
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
    w, table = choose_weight(parts, splits["dev"], config["weight_grid"], config["thresholds"])
    log.info("chosen weight %.2f for %s", w, names[0])
    weights = member_weights(w, len(fitted))
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
