"""`netralitas`: one command with verbs for the whole retraining loop.

    netralitas VERB [options]        netralitas VERB --help

Each verb is the documented command of its module, called through that module's
`main(argv)`, so `netralitas build` and `python -m data.build` cannot drift apart and the
`python -m ...` entry points and `predict.py` keep working as they are. Modules are
imported only when their verb runs (`netralitas predict` with TF-IDF never imports torch).
The exit code is the verb's (`model/exitcodes.py`; `promote` adds 5 = keep).

It sits at the top beside `predict.py` and `pipeline.py`: it reaches `training/` and
`eval/`, which never import each other.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable

# verb -> (module, one-line help); the module's `main(argv)` runs the verb.
VERBS: dict[str, tuple[str, str]] = {
    "build": ("data.build", "rebuild the splits, stats and data card from raw articles + labels"),
    "validate": ("data.validate", "check the splits (labels, leakage, holdout); exit 3 if bad"),
    "train": ("training.runner", "train a backend: netralitas train BACKEND [options]"),
    "evaluate": ("eval.__main__", "evaluate models on a labelled file and write a report"),
    "predict": ("predict", "tag sentences or articles (the predict.py command line)"),
    "bench": ("eval.bench", "speed benchmark of the backends and predict.py"),
    "select": ("data.active", "pick the sentences most worth labelling (Label Studio tasks)"),
    "labelstudio": ("data.labelstudio", "labelling config, task export, annotation import"),
    "promote": ("eval.promote", "promotion gate: candidate vs current model; 0 promote, 5 keep"),
}


def usage() -> str:
    width = max(map(len, VERBS))
    rows = "\n".join(f"  {v.ljust(width)}  {text}" for v, (_, text) in VERBS.items())
    return (
        "usage: netralitas VERB [options]\n\n"
        f"{(__doc__ or '').splitlines()[0]}\n\nverbs:\n{rows}\n\n"
        "`netralitas VERB --help` shows a verb's options. The retraining walk-through is in "
        "the README."
    )


def _train(argv: list[str]) -> int:
    """`train BACKEND [options]`: the runner's command line for that backend."""
    from training.runner import TRAINERS, main

    if not argv or argv[0] in ("-h", "--help") or argv[0] not in TRAINERS:
        print(
            "usage: netralitas train BACKEND [options]\n\n"
            f"backends: {', '.join(TRAINERS)}\n"
            "`netralitas train BACKEND --help` shows the options (--config, --data, --out, "
            "--set key=value, ...).",
            file=sys.stdout if argv and argv[0] in ("-h", "--help") else sys.stderr,
        )
        if argv and argv[0] not in ("-h", "--help"):
            print(f"netralitas train: unknown backend {argv[0]!r}", file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    return main(argv[0], argv[1:])


def verb_main(verb: str) -> Callable[[list[str]], int]:
    """The `main(argv)` behind a verb (imports its module now)."""
    if verb == "train":
        return _train
    return importlib.import_module(VERBS[verb][0]).main


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    verb, rest = argv[0], argv[1:]
    if verb not in VERBS:
        print(f"{usage()}\n\nnetralitas: unknown verb {verb!r}", file=sys.stderr)
        return 2
    program = sys.argv[0]
    sys.argv[0] = f"netralitas {verb}"  # argparse's default prog in the verb's usage line
    try:
        return int(verb_main(verb)(rest) or 0)
    except SystemExit as exc:  # argparse: 0 after --help, 2 on bad usage
        if isinstance(exc.code, int) or exc.code is None:
            return exc.code or 0
        print(exc.code, file=sys.stderr)
        return 1
    finally:
        sys.argv[0] = program


if __name__ == "__main__":
    sys.exit(main())
