"""Promotion gate: is a newly trained model better than the one in use? Promote or keep.

    python -m eval.promote --candidate FOLDER --current NAME_OR_FOLDER
                           [--data data/splits/test.jsonl] [--out runs/promote]
                           [--policy noninferior|superior] [--seed 13] [--bootstrap 1000]
                           [--apply]

Both models are evaluated by the harness (`eval.harness.evaluate`, the same code as
`python -m eval`) on the real test split, sentence for sentence, with the paired bootstrap of
`eval/stats.py` on the two headline figures, **category micro-F1** and **stance macro-F1**
(thresholds from each model's own dev tuning; a test file that overlaps either model's
training data is refused).

The rule:
1. the candidate is **never promoted if it is significantly worse on any headline figure**
   (the 95% paired-bootstrap interval of candidate - current lies below zero, p < 0.05);
2. a candidate with the current model's version (the same model) is kept;
3. otherwise `--policy noninferior` (default) promotes when the headline differences are
   not negative on balance (their mean >= 0), because a retrained model is rarely
   *significantly* better on a thousand sentences and demanding that would freeze the
   model; `--policy superior` promotes only a candidate significantly better on at least
   one headline figure.

The verdict, the rule that decided it, and the figures behind it (both models' values,
the difference with its interval and p-value per headline figure, category macro-F1,
McNemar on stance and exact match, calibration) are written to `promotion.md` and
`promotion.json` in `--out`. `--apply` then copies a promoted candidate over the current
model folder (atomically: the old folder stays until the new one is complete).

Exit codes (`model/exitcodes.py`): **0 promote**, **5 keep**, 2 usage, 3 data (unreadable
or overlapping test file, report not writable), 4 model (missing or tampered folder).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from pathlib import Path

from data.records import DataError
from eval.harness import ALPHA, DEFAULT_DATA, evaluate
from model import exitcodes
from model.artifact import ArtifactError, read_meta
from model.fsutil import atomic_directory, atomic_write_text
from model.paths import REPO_ROOT
from model.registry import resolve_model

log = logging.getLogger("eval.promote")

HEADLINES: dict[str, str] = {
    "category_micro_f1": "category micro-F1",
    "stance_macro_f1": "stance macro-F1",
}
POLICIES = ("noninferior", "superior")
REPORT_MD, REPORT_JSON = "promotion.md", "promotion.json"
MIN_RESAMPLES = 100


def headline_figures(comparison: dict) -> dict[str, dict]:
    """Candidate - current per headline figure from a harness comparison (a = candidate)."""
    micro = {
        "candidate": None,
        "current": None,
        "diff": comparison["category_micro_f1_diff"],
        "ci95": comparison["ci95"],
        "p_value": comparison["p_value"],
        "significant": comparison["significant"],
    }
    stance = comparison["stance_macro_f1"]
    out = {
        "category_micro_f1": micro,
        "stance_macro_f1": {
            "candidate": stance["a"],
            "current": stance["b"],
            "diff": stance["diff"],
            "ci95": stance["ci95"],
            "p_value": stance["p_value"],
            "significant": stance["significant"],
        },
    }
    for fig in out.values():
        fig["direction"] = (
            ("better" if fig["diff"] > 0 else "worse") if fig["significant"] else "no difference"
        )
    return out


def decide(figures: dict[str, dict], policy: str, same_model: bool) -> tuple[str, str]:
    """("promote" | "keep", the reason in one sentence) under the documented rule."""
    worse = [HEADLINES[k] for k, f in figures.items() if f["direction"] == "worse"]
    better = [HEADLINES[k] for k, f in figures.items() if f["direction"] == "better"]
    if worse:
        return "keep", f"significantly worse on {', '.join(worse)} (never promoted)"
    if same_model:
        return "keep", "the candidate is the current model (same version)"
    if policy == "superior":
        if better:
            return "promote", f"significantly better on {', '.join(better)}, worse on none"
        return "keep", "not significantly better on any headline figure (policy superior)"
    mean = sum(f["diff"] for f in figures.values()) / len(figures)
    if mean >= 0:
        detail = (
            f"significantly better on {', '.join(better)}"
            if better
            else "no significant difference"
        )
        return "promote", f"{detail}, none worse; mean headline difference {mean:+.4f} >= 0"
    return (
        "keep",
        f"no significant difference, but the headline figures fall on balance ({mean:+.4f})",
    )


def gate(
    candidate: str,
    current: str,
    data: Path = DEFAULT_DATA,
    *,
    policy: str = "noninferior",
    seed: int = 13,
    n_bootstrap: int = 1000,
) -> dict:
    """Evaluate both models on `data` and return the verdict with its figures."""
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; one of {', '.join(POLICIES)}")
    result = evaluate([candidate, current], data, seed=seed, n_bootstrap=n_bootstrap, timing=None)
    metrics = result.metrics
    cand_label, cur_label = list(metrics["models"])
    cand, cur = metrics["models"][cand_label], metrics["models"][cur_label]
    (comparison,) = metrics["comparisons"]
    figures = headline_figures(comparison)
    figures["category_micro_f1"]["candidate"] = cand["categories"]["micro_f1"]
    figures["category_micro_f1"]["current"] = cur["categories"]["micro_f1"]
    same = cand["version"] == cur["version"] and cand["backend"] == cur["backend"]
    verdict, reason = decide(figures, policy, same)

    def model_info(block: dict, label: str) -> dict:
        keys = ("path", "backend", "version", "encoder", "created", "training_data_sha256")
        return {"label": label, **{k: block[k] for k in keys}}

    macro = comparison["category_macro_f1"]
    return {
        "verdict": verdict,
        "reason": reason,
        "policy": policy,
        "rule": "never promote a model significantly worse (paired bootstrap, p < "
        f"{ALPHA}) on any headline figure; policy {policy}",
        "headline": figures,
        "supporting": {
            "category_macro_f1": {
                "candidate": macro["a"],
                "current": macro["b"],
                "diff": macro["diff"],
                "ci95": macro["ci95"],
                "p_value": macro["p_value"],
                "significant": macro["significant"],
            },
            "stance_mcnemar": comparison["stance_mcnemar"],
            "exact_match_mcnemar": comparison["exact_match_mcnemar"],
            "calibration": {
                "candidate": {k: cand["calibration"][k] for k in ("category_ece", "stance_ece")},
                "current": {k: cur["calibration"][k] for k in ("category_ece", "stance_ece")},
            },
            "ci95": {"candidate": cand["ci95"], "current": cur["ci95"]},
        },
        "models": {
            "candidate": model_info(cand, cand_label),
            "current": model_info(cur, cur_label),
        },
        "data": {k: metrics["run"]["data"][k] for k in ("path", "sha256", "sentences")},
        "run": {
            "date": metrics["run"]["date"],
            "seed": seed,
            "bootstrap": n_bootstrap,
            "alpha": ALPHA,
        },
        "warnings": metrics["warnings"],
    }


def _pct(x: float) -> str:
    return f"{x:.3f}"


def _mcnemar_line(what: str, test: dict) -> str:
    return (
        f"- {what}, McNemar: only the candidate {test['a_only_correct']} sentences, only the "
        f"current {test['b_only_correct']}, exact p = {test['p_value']:.3f}"
    )


def report_markdown(report: dict) -> str:
    """The human-readable report: verdict first, then the figures that decided it."""
    m, d = report["models"], report["data"]
    lines = [
        f"# Promotion gate: **{report['verdict'].upper()}**",
        "",
        f"Reason: {report['reason']}.",
        "",
        f"- candidate: `{m['candidate']['path']}` ({m['candidate']['backend']}, version "
        f"{m['candidate']['version']})",
        f"- current: `{m['current']['path']}` ({m['current']['backend']}, version "
        f"{m['current']['version']})",
        f"- data: `{d['path']}` ({d['sentences']} sentences, sha256 {d['sha256'][:12]})",
        f"- paired bootstrap: {report['run']['bootstrap']} resamples, seed "
        f"{report['run']['seed']}, alpha {report['run']['alpha']}; rule: {report['rule']}",
        "",
        "## Headline figures (decide the verdict)",
        "",
        "| figure | current | candidate | candidate - current [95% CI] | p | |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for key, name in HEADLINES.items():
        f = report["headline"][key]
        lo, hi = f["ci95"]
        lines.append(
            f"| {name} | {_pct(f['current'])} | {_pct(f['candidate'])} | {f['diff']:+.3f} "
            f"[{lo:+.3f}, {hi:+.3f}] | {f['p_value']:.3f} | {f['direction']} |"
        )
    s = report["supporting"]
    macro = s["category_macro_f1"]
    lo, hi = macro["ci95"]
    cal = s["calibration"]
    lines += [
        "",
        "## Supporting figures (do not decide)",
        "",
        f"- category macro-F1: current {_pct(macro['current'])}, candidate "
        f"{_pct(macro['candidate'])}, difference {macro['diff']:+.3f} [{lo:+.3f}, {hi:+.3f}], "
        f"p = {macro['p_value']:.3f}",
        _mcnemar_line("stance right", s["stance_mcnemar"]),
        _mcnemar_line("all categories right", s["exact_match_mcnemar"]),
        f"- ECE categories / stance: current {cal['current']['category_ece']:.3f} / "
        f"{cal['current']['stance_ece']:.3f}, candidate {cal['candidate']['category_ece']:.3f} / "
        f"{cal['candidate']['stance_ece']:.3f}",
    ]
    if report["warnings"]:
        lines += ["", "## Warnings", "", *(f"- {w}" for w in report["warnings"])]
    return "\n".join(lines) + "\n"


def write_report(out: Path, report: dict) -> tuple[Path, Path]:
    """promotion.md and promotion.json in `out`, each written atomically."""
    md, js = Path(out) / REPORT_MD, Path(out) / REPORT_JSON
    atomic_write_text(js, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    atomic_write_text(md, report_markdown(report))
    return md, js


def install(candidate: Path, current: Path) -> None:
    """Replace the current model folder with a copy of the candidate, atomically."""
    if Path(candidate).resolve() == Path(current).resolve():
        return
    with atomic_directory(current) as tmp:
        shutil.copytree(candidate, tmp, dirs_exist_ok=True)
        read_meta(tmp)  # the copy verifies against its manifest before it replaces anything


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m eval.promote", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--candidate", required=True, help="the newly trained model folder")
    parser.add_argument("--current", required=True, help="the model in use: backend name or folder")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="labelled test file")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "runs" / "promote")
    parser.add_argument("--policy", choices=POLICIES, default="noninferior")
    parser.add_argument("--seed", type=int, default=13, help="bootstrap seed")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument(
        "--apply", action="store_true", help="on promote, copy the candidate over the current"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.bootstrap < MIN_RESAMPLES:
        parser.error(f"--bootstrap must be at least {MIN_RESAMPLES}")
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        report = gate(
            args.candidate,
            args.current,
            args.data,
            policy=args.policy,
            seed=args.seed,
            n_bootstrap=args.bootstrap,
        )
    except DataError as exc:
        print(f"eval.promote: data error: {exc}", file=sys.stderr)
        return exitcodes.INPUT
    except ArtifactError as exc:
        print(f"eval.promote: model error: {exc}", file=sys.stderr)
        return exitcodes.MODEL
    promote = report["verdict"] == "promote"
    report["applied"] = False
    try:
        md, _ = write_report(args.out, report)
        if promote and args.apply:
            target = resolve_model(args.current)
            install(resolve_model(args.candidate), target)
            report["applied"] = True
            write_report(args.out, report)
            log.info("installed %s as %s", args.candidate, target)
    except OSError as exc:
        print(f"eval.promote: cannot write: {exc}", file=sys.stderr)
        return exitcodes.INPUT
    except ArtifactError as exc:
        print(f"eval.promote: model error while installing: {exc}", file=sys.stderr)
        return exitcodes.MODEL
    print(f"{report['verdict'].upper()}: {report['reason']}\nReport: {md}")
    return exitcodes.OK if promote else exitcodes.KEEP


if __name__ == "__main__":
    sys.exit(main())
