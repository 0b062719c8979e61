"""Write one evaluation run: metrics.json, report.md, report.html, errors.jsonl, PNG charts.

The folder is written through `model.fsutil.atomic_directory`: a crash leaves the previous
run intact, and re-running into the same folder replaces it whole (no stale chart or
errors file from an earlier model list). report.md and report.html are rendered from the
same list of blocks, so they always say the same thing; the HTML embeds the PNGs as base64
and needs nothing beside it, while report.md links the PNG files written next to it.
Charts use matplotlib's object API with the Agg canvas (no pyplot, no display needed).

metrics.json keys (stable; `schema_version` changes if a key changes meaning or goes away).
`<label>` is a model's report label: `<backend>` or `<backend>:<encoder>`, with `@<version>`
or `#k` added when two models of a run would share it. Every rate is a fraction in [0, 1].

`schema_version`
    layout version of metrics.json (1)
`run.date`
    UTC date and time of the run, ISO 8601 (differs between runs)
`run.seed`
    seed of every bootstrap resample (`numpy.random.default_rng`)
`run.label_schema_version`
    label schema version (`model/schema.py`)
`run.bootstrap`
    `resamples`, `confidence` (0.95), `method`
`run.alpha`
    level of every `significant` flag (0.05, no multiple-comparison correction)
`run.machine`
    `platform`, `machine`, `processor`, `cpu_count`, `python`, `torch_threads` (only when a
    backend loaded torch)
`run.libraries`
    versions of python, numpy, scikit-learn, joblib, torch, transformers, ...
`run.data`
    evaluated file: `path`, `sha256`, `sentences`, `labels.categories.<cat>`,
    `labels.no_category`, `labels.stance.<stance>` (gold counts)
`run.overlap`
    `allowed` (--allow-overlap given), `by_model.<label>.sentences` and `.ids` (file
    sentences the model saw in train/dev), `unchecked` (labels whose artifact has no
    seen-sentence record)
`run.thresholds`
    where the decision thresholds come from (each model's meta.json; never this file)
`models.<label>.backend`, `.version`, `.encoder`, `.path`, `.seed`, `.created`
    from the artifact's meta.json (`encoder` null for TF-IDF)
`models.<label>.size_bytes`, `.parameters`
    bytes of the model folder; parameter count if the artifact records it, else null
`models.<label>.training_data_sha256`, `.data_is_its_test_split`
    training data fingerprint; whether this file is the test split recorded there (null if
    unknown)
`models.<label>.thresholds.<cat>`
    category decision thresholds used
`models.<label>.categories`
    `per_label.<cat>.{precision, recall, f1, support}`, `micro_precision`, `micro_recall`,
    `micro_f1`, `macro_f1` (all 8 labels), `macro_f1_supported` (labels with support > 0),
    `subset_accuracy`, `hamming_loss`
`models.<label>.stance`
    `accuracy`, `macro_f1`, `macro_f1_supported`, `per_label.<stance>.{precision, recall,
    f1, support}`, `confusion` (rows true, columns predicted), `labels` (row/column order)
`models.<label>.ci95.<figure>`
    `{estimate, low, high}` for `category_micro_f1`, `category_macro_f1`, `subset_accuracy`,
    `stance_accuracy`, `stance_macro_f1`
`models.<label>.calibration`
    `bins` (10), `category_ece`, `stance_ece`, `category_reliability[]` and
    `stance_reliability[]` of `{low, high, count, confidence, accuracy}`
`comparisons[]`
    one per model pair, in command-line order: `a`, `b`, `category_micro_f1_diff` (a - b),
    `ci95` ([low, high]), `p_value` (paired bootstrap), `significant`
`comparisons[].category_macro_f1`, `.stance_macro_f1`
    `{a, b, diff, ci95, p_value, significant}` (paired bootstrap)
`comparisons[].stance_mcnemar`, `.exact_match_mcnemar`
    `{both_correct, a_only_correct, b_only_correct, both_wrong, exact_p, chi2_cc, chi2_cc_p,
    p_value (= exact_p), significant}`
`timing.enabled`
    false with --no-timing (then nothing else under `timing`)
`timing.settings`
    batch size and budgets used
`timing.models.<label>.throughput`
    `sentences`, `batches`, `seconds`, `sentences_per_second`
`timing.models.<label>.latency`
    `calls`, `mean_ms`, `p50_ms`, `p95_ms`, `p99_ms`, `max_ms` (single-sentence calls)
`warnings[]`
    plain-language caveats (overlap, labels absent from the file, small test set, ...)

Everything except `run.date` and `timing` is identical for the same inputs and seed.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import re
from pathlib import Path

from eval.harness import RunResult
from model.fsutil import atomic_directory
from model.schema import CATEGORIES, CATEGORY_EN, STANCE_EN, STANCES

log = logging.getLogger("eval.report")

METRICS_FILE = "metrics.json"
ERRORS_FILE = "errors.jsonl"
REPORT_MD = "report.md"
REPORT_HTML = "report.html"
FIG_PER_LABEL = "per_label_f1.png"
FIG_CONFUSION = "stance_confusion.png"
FIG_RELIABILITY = "reliability.png"
SHOWN_ERRORS = 15


# --- number formatting ---------------------------------------------------------------------


def _f(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _ci(block: dict) -> str:
    return f"{block['estimate']:.3f} [{block['low']:.3f}, {block['high']:.3f}]"


def _signed(value: float) -> str:
    return f"{value:+.3f}"


def _p(value: float) -> str:
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def _rate(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def _ms(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _mb(size: int) -> str:
    mb = size / 1e6
    return f"{mb:.1f}" if mb >= 1 else f"{mb:.2f}"


def _clip(text: str, limit: int = 140) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- one document, two renderings ----------------------------------------------------------


class _Doc:
    """Blocks rendered both as Markdown and as HTML, so the two reports cannot drift.

    Inline text may use `code` and **bold**; everything else is escaped for each format.
    """

    def __init__(self) -> None:
        self.blocks: list[tuple] = []

    def heading(self, level: int, text: str) -> None:
        self.blocks.append(("h", level, text))

    def para(self, text: str) -> None:
        self.blocks.append(("p", text))

    def warning(self, text: str) -> None:
        self.blocks.append(("warn", text))

    def bullets(self, items: list[str]) -> None:
        if items:
            self.blocks.append(("ul", items))

    def table(self, header: list[str], rows: list[list[str]], numeric_from: int = 1) -> None:
        """A table; columns from `numeric_from` on are right-aligned (numbers)."""
        self.blocks.append(("table", header, rows, numeric_from))

    def image(self, filename: str, alt: str) -> None:
        self.blocks.append(("img", filename, alt))

    # Markdown
    @staticmethod
    def _md_cell(text: str) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    def markdown(self) -> str:
        out: list[str] = []
        for block in self.blocks:
            kind = block[0]
            if kind == "h":
                out.append(f"{'#' * block[1]} {block[2]}")
            elif kind == "p":
                out.append(block[1])
            elif kind == "warn":
                out.append(f"> **⚠ WARNING:** {block[1]}")
            elif kind == "ul":
                out.append("\n".join(f"- {item}" for item in block[1]))
            elif kind == "table":
                _, header, rows, numeric_from = block
                aligns = ["---" if i < numeric_from else "---:" for i in range(len(header))]
                lines = [
                    "| " + " | ".join(self._md_cell(h) for h in header) + " |",
                    "|" + "|".join(aligns) + "|",
                ]
                lines += ["| " + " | ".join(self._md_cell(c) for c in row) + " |" for row in rows]
                out.append("\n".join(lines))
            elif kind == "img":
                out.append(f"![{block[2]}]({block[1]})")
        return "\n\n".join(out) + "\n"

    # HTML
    @staticmethod
    def _inline(text: str) -> str:
        escaped = html.escape(str(text), quote=False)
        escaped = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
        return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", escaped)

    def html(self, title: str, images: dict[str, bytes]) -> str:
        body: list[str] = []
        for block in self.blocks:
            kind = block[0]
            if kind == "h":
                body.append(f"<h{block[1]}>{self._inline(block[2])}</h{block[1]}>")
            elif kind == "p":
                body.append(f"<p>{self._inline(block[1])}</p>")
            elif kind == "warn":
                body.append(
                    f'<div class="warn"><strong>⚠ WARNING:</strong> {self._inline(block[1])}</div>'
                )
            elif kind == "ul":
                items = "".join(f"<li>{self._inline(i)}</li>" for i in block[1])
                body.append(f"<ul>{items}</ul>")
            elif kind == "table":
                _, header, rows, numeric_from = block

                def cell(tag: str, i: int, text: str, numeric_from: int = numeric_from) -> str:
                    cls = ' class="num"' if i >= numeric_from else ""
                    return f"<{tag}{cls}>{self._inline(text)}</{tag}>"

                head = "".join(cell("th", i, h) for i, h in enumerate(header))
                trs = "".join(
                    "<tr>" + "".join(cell("td", i, c) for i, c in enumerate(row)) + "</tr>"
                    for row in rows
                )
                body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{trs}</tbody></table>")
            elif kind == "img":
                data = base64.b64encode(images[block[1]]).decode("ascii")
                body.append(
                    f'<figure><img alt="{html.escape(block[2])}" '
                    f'src="data:image/png;base64,{data}"><figcaption>'
                    f"{html.escape(block[2])}</figcaption></figure>"
                )
        return _HTML_PAGE.format(title=html.escape(title), body="\n".join(body))


_HTML_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1100px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }}
table {{ border-collapse: collapse; margin: 0.8em 0; font-size: 0.92em; }}
th, td {{ border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }}
th {{ background: #f2f2f2; }}
td.num, th.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
code {{ background: #f4f4f4; padding: 0 0.2em; }}
.warn {{ border: 2px solid #c0392b; background: #fdecea; padding: 0.6em 0.9em;
        margin: 0.8em 0; }}
figure {{ margin: 1em 0; }} img {{ max-width: 100%; }}
figcaption {{ color: #555; font-size: 0.9em; }}
</style>
</head>
<body>
{body}
</body>
</html>
"""


# --- charts --------------------------------------------------------------------------------


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def _png(fig) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def _bars(ax, groups: list[str], values: dict[str, list[float]], title: str) -> None:
    n = max(len(values), 1)
    width = 0.8 / n
    for k, (label, vals) in enumerate(values.items()):
        xs = [i - 0.4 + width * (k + 0.5) for i in range(len(groups))]
        ax.bar(xs, vals, width=width, label=label)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups, rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("F1")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)


def chart_per_label(metrics: dict) -> bytes:
    """Grouped bars: F1 of every category and stance, one bar per model."""
    models = metrics["models"]
    counts = metrics["run"]["data"]["labels"]
    fig = _figure(11, 4.2)
    ax_c, ax_s = fig.subplots(1, 2, width_ratios=[3, 1])
    _bars(
        ax_c,
        [f"{c}\n(n={counts['categories'][c]})" for c in CATEGORIES],
        {m: [b["categories"]["per_label"][c]["f1"] for c in CATEGORIES] for m, b in models.items()},
        "Category F1 (n = gold sentences in this file)",
    )
    _bars(
        ax_s,
        [f"{s}\n(n={counts['stance'][s]})" for s in STANCES],
        {m: [b["stance"]["per_label"][s]["f1"] for s in STANCES] for m, b in models.items()},
        "Stance F1",
    )
    ax_c.legend(fontsize=8, loc="upper right")
    return _png(fig)


def chart_confusion(metrics: dict) -> bytes:
    """Stance confusion matrix per model (rows true, columns predicted), counts annotated."""
    models = metrics["models"]
    fig = _figure(3.6 * len(models) + 0.4, 3.6)
    axes = fig.subplots(1, len(models), squeeze=False)[0]
    for ax, (label, block) in zip(axes, models.items(), strict=True):
        matrix = block["stance"]["confusion"]
        peak = max(max(row) for row in matrix) or 1
        ax.imshow(matrix, cmap="Blues", vmin=0, vmax=peak)
        for i, row in enumerate(matrix):
            for j, value in enumerate(row):
                colour = "white" if value > peak / 2 else "black"
                ax.text(j, i, str(value), ha="center", va="center", color=colour)
        ax.set_xticks(range(len(STANCES)))
        ax.set_xticklabels(STANCES)
        ax.set_yticks(range(len(STANCES)))
        ax.set_yticklabels(STANCES)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(label, fontsize=9)
    return _png(fig)


def chart_reliability(metrics: dict) -> bytes:
    """Reliability diagrams: mean confidence vs observed frequency per bin, per model."""
    fig = _figure(10, 4.4)
    axes = fig.subplots(1, 2)
    panels = (
        ("category_reliability", "category_ece", "Categories: probability vs gold frequency"),
        ("stance_reliability", "stance_ece", "Stance: top probability vs accuracy"),
    )
    for ax, (key, ece_key, title) in zip(axes, panels, strict=True):
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfect")
        for label, block in metrics["models"].items():
            cal = block["calibration"]
            bins = [b for b in cal[key] if b["count"]]
            total = sum(b["count"] for b in bins) or 1
            ax.plot(
                [b["confidence"] for b in bins],
                [b["accuracy"] for b in bins],
                marker="o",
                label=f"{label} (ECE {cal[ece_key]:.3f})",
            )
            ax.scatter(
                [b["confidence"] for b in bins],
                [b["accuracy"] for b in bins],
                s=[20 + 400 * b["count"] / total for b in bins],
                alpha=0.25,
            )
        ax.set_xlim(0, 1)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("mean predicted probability in bin")
        ax.set_ylabel("observed frequency")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=7, loc="lower right")
        ax.grid(alpha=0.3)
    return _png(fig)


# --- the report ----------------------------------------------------------------------------


def _timing(metrics: dict, label: str) -> dict | None:
    return (metrics["timing"].get("models") or {}).get(label)


def _headline(doc: _Doc, metrics: dict) -> None:
    rows = []
    for label, b in metrics["models"].items():
        t = _timing(metrics, label)
        rows.append(
            [
                f"**{label}**",
                _ci(b["ci95"]["category_micro_f1"]),
                _f(b["categories"]["macro_f1"]),
                _ci(b["ci95"]["stance_accuracy"]),
                _f(b["stance"]["macro_f1"]),
                f"{_f(b['calibration']['category_ece'])} / {_f(b['calibration']['stance_ece'])}",
                _rate(t["throughput"]["sentences_per_second"]) if t else "n/a",
                _ms(t["latency"]["p95_ms"]) if t else "n/a",
                _mb(b["size_bytes"]),
            ]
        )
    doc.table(
        [
            "Model",
            "Category micro-F1 [95% CI]",
            "Category macro-F1",
            "Stance accuracy [95% CI]",
            "Stance macro-F1",
            "ECE (categories / stance)",
            "Sentences/s",
            "p95 latency (ms)",
            "Size (MB)",
        ],
        rows,
    )
    doc.para(
        "Higher is better for F1, accuracy and sentences/s; lower is better for ECE "
        "(calibration error), latency and size. Brackets: 95% bootstrap confidence interval. "
        "Macro-F1 averages all labels, including any with no example in this file (see "
        "Warnings). Size in MB of 10⁶ bytes (the whole model folder)."
    )


def _cross_validation(doc: _Doc, metrics: dict) -> None:
    runs = metrics.get("cross_validation") or []
    if not runs:
        doc.para("Not run (`python -m training.cv`, then `python -m eval --cv FILE`).")
        return
    figures = ("category_micro_f1", "category_macro_f1", "stance_macro_f1", "category_ece")
    rows = []
    for cv in runs:
        s = cv["summary"]
        opts = ", ".join(f"{k}={v}" for k, v in cv.get("options", {}).items())
        rows.append(
            [f"**{cv['backend']}**" + (f" ({opts})" if opts else "")]
            + [f"{_f(s[f]['mean'])} ± {_f(s[f]['std'])}" for f in figures]
            + [", ".join(_f(r["category_micro_f1"], 2) for r in cv["per_fold"])]
        )
    doc.table(
        [
            "Backend",
            "Category micro-F1",
            "Category macro-F1",
            "Stance macro-F1",
            "Category ECE",
            "Per-fold category micro-F1",
        ],
        rows,
    )
    first = runs[0]
    doc.para(
        f"Mean ± standard deviation over {first['folds']} folds grouped by story over all "
        f"{first['real_sentences']} real sentences (train, dev and test together); in each "
        "fold one fold of stories is dev for thresholds and the rest train (authored "
        "sentences as each config says). Read beside the single-split headline above: a "
        "model choice should hold on both."
    )


ABLATION_HEADER = [
    "Setting",
    "Backend",
    "Dev cat micro-F1",
    "Dev stance macro-F1",
    "Test cat micro-F1",
    "Test cat macro-F1",
    "Test stance macro-F1",
    "Test ECE cat / stance",
    "CV cat micro-F1",
    "CV stance macro-F1",
    "Train s",
]


def ablation_rows(results: list[dict]) -> list[list[str]]:
    """One row per ablation setting (`python -m ablate`'s results): dev, test, CV, time."""
    rows = []
    for r in results:
        cv, t = r.get("cv") or {}, r["test"]

        def spread(key: str, cv: dict = cv) -> str:
            return f"{cv[key]['mean']:.3f} ± {cv[key]['std']:.3f}" if key in cv else "-"

        rows.append(
            [
                r["what"],
                f"`{r['backend']}`",
                _f(r["dev"]["category_micro_f1"]),
                _f(r["dev"]["stance_macro_f1"]),
                _f(t["category_micro_f1"]),
                _f(t["category_macro_f1"]),
                _f(t["stance_macro_f1"]),
                f"{_f(t['category_ece'])} / {_f(t['stance_ece'])}",
                spread("category_micro_f1"),
                spread("stance_macro_f1"),
                f"{r['train_seconds']:.0f}",
            ]
        )
    return rows


def _ablation(doc: _Doc, metrics: dict) -> None:
    results = metrics.get("ablation") or []
    doc.table(ABLATION_HEADER, ablation_rows(results), numeric_from=2)
    doc.para(
        "Dev: the real dev split (thresholds and calibration tuned there; every choice is "
        "made on dev). Test: this report's data, the same figures as the headline above "
        "for the same models. CV: mean ± standard deviation over folds grouped by story "
        "over all real sentences, for the settings cheap enough to retrain per fold. Rows "
        "marked GPU were trained on a lent GPU (`training/gpu_sweep.py`), the others on 2 "
        "CPU cores, where training time depends on the load."
    )


def _per_label(doc: _Doc, metrics: dict) -> None:
    models = metrics["models"]
    labels = list(models)
    counts = metrics["run"]["data"]["labels"]
    doc.para("Each cell: precision / recall / F1. Support = gold sentences with the label.")
    rows = []
    for c in CATEGORIES:
        row = [f"`{c}` ({CATEGORY_EN[c]})", str(counts["categories"][c])]
        for m in labels:
            v = models[m]["categories"]["per_label"][c]
            row.append(f"{v['precision']:.2f} / {v['recall']:.2f} / {v['f1']:.2f}")
        rows.append(row)
    rows.append(
        ["**micro average**", str(sum(counts["categories"].values()))]
        + [
            f"{models[m]['categories']['micro_precision']:.2f} / "
            f"{models[m]['categories']['micro_recall']:.2f} / "
            f"{models[m]['categories']['micro_f1']:.2f}"
            for m in labels
        ]
    )
    rows.append(
        ["**macro F1, all 8 labels**", ""]
        + [_f(models[m]["categories"]["macro_f1"]) for m in labels]
    )
    rows.append(
        ["**macro F1, labels present**", ""]
        + [_f(models[m]["categories"]["macro_f1_supported"]) for m in labels]
    )
    rows.append(
        ["**subset accuracy** (all 8 right) [95% CI]", ""]
        + [_ci(models[m]["ci95"]["subset_accuracy"]) for m in labels]
    )
    rows.append(
        ["**Hamming loss** (share of wrong label slots)", ""]
        + [_f(models[m]["categories"]["hamming_loss"]) for m in labels]
    )
    doc.table(["Category", "Support", *labels], rows, numeric_from=1)


def _stance(doc: _Doc, metrics: dict) -> None:
    models = metrics["models"]
    labels = list(models)
    counts = metrics["run"]["data"]["labels"]["stance"]
    rows = []
    for s in STANCES:
        row = [f"`{s}` ({STANCE_EN[s]})", str(counts[s])]
        for m in labels:
            v = models[m]["stance"]["per_label"][s]
            row.append(f"{v['precision']:.2f} / {v['recall']:.2f} / {v['f1']:.2f}")
        rows.append(row)
    rows.append(
        ["**accuracy** [95% CI]", ""] + [_ci(models[m]["ci95"]["stance_accuracy"]) for m in labels]
    )
    rows.append(
        ["**macro F1, all 3** [95% CI]", ""]
        + [_ci(models[m]["ci95"]["stance_macro_f1"]) for m in labels]
    )
    rows.append(
        ["**macro F1, stances present**", ""]
        + [_f(models[m]["stance"]["macro_f1_supported"]) for m in labels]
    )
    doc.table(["Stance", "Support", *labels], rows, numeric_from=1)
    doc.para("Confusion matrices (rows: true stance, columns: predicted stance):")
    for m in labels:
        matrix = models[m]["stance"]["confusion"]
        doc.para(f"**{m}**")
        doc.table(
            ["true \\ predicted", *STANCES],
            [[s, *map(str, row)] for s, row in zip(STANCES, matrix, strict=True)],
        )


def _significance(doc: _Doc, metrics: dict) -> None:
    comparisons = metrics["comparisons"]
    if not comparisons:
        doc.para("Only one model was evaluated; there is nothing to compare.")
        return
    alpha = metrics["run"]["alpha"]
    doc.para(
        f"Is one model really better, or could the gap be chance on these "
        f"{metrics['run']['data']['sentences']} sentences? F1 differences use a paired "
        f"bootstrap ({metrics['run']['bootstrap']['resamples']} resamples of the sentences, "
        "both models scored on the same resamples); per-sentence right/wrong uses McNemar's "
        f"exact test. 'Significant' means p < {alpha}; with several comparisons, expect "
        "about one false alarm in twenty."
    )
    for c in comparisons:
        a, b = c["a"], c["b"]
        doc.heading(3, f"{a} vs {b}")
        rows = [
            [
                "Category micro-F1",
                _f(metrics["models"][a]["categories"]["micro_f1"]),
                _f(metrics["models"][b]["categories"]["micro_f1"]),
                f"{_signed(c['category_micro_f1_diff'])} "
                f"[{_signed(c['ci95'][0])}, {_signed(c['ci95'][1])}]",
                _p(c["p_value"]),
                "yes" if c["significant"] else "no",
            ]
        ]
        for key, name in (
            ("category_macro_f1", "Category macro-F1"),
            ("stance_macro_f1", "Stance macro-F1"),
        ):
            d = c[key]
            rows.append(
                [
                    name,
                    _f(d["a"]),
                    _f(d["b"]),
                    f"{_signed(d['diff'])} [{_signed(d['ci95'][0])}, {_signed(d['ci95'][1])}]",
                    _p(d["p_value"]),
                    "yes" if d["significant"] else "no",
                ]
            )
        doc.table(["Paired bootstrap", a, b, f"{a} − {b} [95% CI]", "p", "significant"], rows)
        mc_rows = []
        for key, name in (
            ("stance_mcnemar", "Stance right"),
            ("exact_match_mcnemar", "All 8 categories right"),
        ):
            m = c[key]
            mc_rows.append(
                [
                    name,
                    str(m["a_only_correct"]),
                    str(m["b_only_correct"]),
                    str(m["both_correct"]),
                    str(m["both_wrong"]),
                    _p(m["exact_p"]),
                    f"{m['chi2_cc']:.2f} (p {_p(m['chi2_cc_p'])})",
                    "yes" if m["significant"] else "no",
                ]
            )
        doc.table(
            [
                "McNemar",
                f"only {a} right",
                f"only {b} right",
                "both right",
                "both wrong",
                "exact p",
                "χ² cc (p)",
                "significant",
            ],
            mc_rows,
        )
        diff = c["category_micro_f1_diff"]
        if c["significant"]:
            better = a if diff > 0 else b
            cat_text = (
                f"on category micro-F1 (paired bootstrap) {better} is better "
                f"(p = {_p(c['p_value'])})"
            )
        else:
            cat_text = (
                "on category micro-F1 (paired bootstrap) this file cannot tell them apart "
                f"(p = {_p(c['p_value'])}, not significant)"
            )
        st = c["stance_mcnemar"]
        if st["significant"]:
            better = a if st["a_only_correct"] > st["b_only_correct"] else b
            st_text = f"on stance accuracy (McNemar) {better} is better (p = {_p(st['p_value'])})"
        else:
            st_text = (
                "on stance accuracy (McNemar) this file cannot tell them apart "
                f"(p = {_p(st['p_value'])}, not significant)"
            )
        doc.para(f"In words: {cat_text}; {st_text}.")


def _calibration(doc: _Doc, metrics: dict) -> None:
    doc.para(
        "Expected calibration error (ECE): predictions are put in 10 equal-width bins by "
        "probability; ECE is the average gap between the predicted probability and how often "
        "the prediction is right, weighted by bin size (0 = perfectly calibrated). For "
        "categories every (sentence, category) probability counts as one prediction, so the "
        "many easy 'absent' labels keep this figure low; the diagram shows where the gaps "
        "are. For stance the confidence is the probability of the chosen stance."
    )
    doc.table(
        ["Model", "Category ECE", "Stance ECE"],
        [
            [
                label,
                _f(b["calibration"]["category_ece"]),
                _f(b["calibration"]["stance_ece"]),
            ]
            for label, b in metrics["models"].items()
        ],
    )


def _speed(doc: _Doc, metrics: dict) -> None:
    timing = metrics["timing"]
    if not timing["enabled"]:
        doc.para("Timing was skipped for this run (`--no-timing`).")
        rows = [
            [label, "n/a", "n/a", "n/a", "n/a", _mb(b["size_bytes"]), _params(b["parameters"])]
            for label, b in metrics["models"].items()
        ]
    else:
        s = timing["settings"]
        machine = metrics["run"]["machine"]
        doc.para(
            f"Measured in this run, on this machine ({machine['processor'] or machine['machine']}, "
            f"{machine['cpu_count']} CPUs), models one after the other in one process, after a "
            f"warm-up. Throughput: `predict` on batches of {s['batch_size']} sentences for about "
            f"{s['min_seconds']:g} s. Latency: single-sentence `predict` calls (up to "
            f"{s['latency_calls']}); with fewer than 100 calls p99 is close to the slowest call."
        )
        rows = []
        for label, b in metrics["models"].items():
            t = timing["models"][label]
            lat = t["latency"]
            rows.append(
                [
                    label,
                    _rate(t["throughput"]["sentences_per_second"]),
                    f"{_ms(lat['p50_ms'])} / {_ms(lat['p95_ms'])} / {_ms(lat['p99_ms'])}",
                    str(lat["calls"]),
                    f"{t['throughput']['sentences']} in {t['throughput']['seconds']:.2f} s",
                    _mb(b["size_bytes"]),
                    _params(b["parameters"]),
                ]
            )
    doc.table(
        [
            "Model",
            "Sentences/s",
            "Latency p50 / p95 / p99 (ms)",
            "Latency calls",
            "Throughput sample",
            "Size (MB)",
            "Parameters",
        ],
        rows,
    )


def _params(value: int | None) -> str:
    return "not recorded" if value is None else f"{value:,}"


def _errors(doc: _Doc, metrics: dict, errors: list[dict]) -> None:
    labels = list(metrics["models"])
    n = metrics["run"]["data"]["sentences"]
    rows = []
    for m in labels:
        cat = sum(1 for e in errors if e["models"][m]["missed"] or e["models"][m]["spurious"])
        st = sum(1 for e in errors if not e["models"][m]["stance_correct"])
        anyw = sum(1 for e in errors if m in e["wrong"])
        rows.append([m, str(cat), str(st), f"{anyw} of {n}"])
    doc.table(["Model", "Category errors", "Stance errors", "Sentences with any error"], rows)
    if len(labels) > 1:
        dis = sum(1 for e in errors if "disagreement" in e["kinds"])
        doc.para(f"The models disagree on {dis} of {n} sentences.")
    doc.para(
        f"`{ERRORS_FILE}` lists all {len(errors)} sentences where a model was wrong or the "
        "models disagree, with each model's decision and top scores. The first "
        f"{min(SHOWN_ERRORS, len(errors))}:"
    )
    shown = []
    for e in errors[:SHOWN_ERRORS]:
        gold = f"{', '.join(e['gold']['categories']) or '-'}; {e['gold']['stance']}"
        preds = [
            f"{', '.join(e['models'][m]['categories']) or '-'}; {e['models'][m]['stance']}"
            for m in labels
        ]
        shown.append([e["id"], _clip(e["text"]), gold, *preds])
    if shown:
        doc.table(["id", "sentence", "gold (categories; stance)", *labels], shown, numeric_from=99)


def _provenance(doc: _Doc, metrics: dict) -> None:
    run = metrics["run"]
    data = run["data"]
    machine = run["machine"]
    machine_text = (
        f"{machine['platform']}; {machine['processor'] or machine['machine']}; "
        f"{machine['cpu_count']} CPUs; Python {machine['python']}"
    )
    if "torch_threads" in machine:
        machine_text += f"; torch threads {machine['torch_threads']}"
    libs = ", ".join(f"{k} {v}" for k, v in run["libraries"].items())
    doc.table(
        ["Item", "Value"],
        [
            ["Date (UTC)", run["date"]],
            ["Data file", f"`{data['path']}`"],
            ["Data version (SHA-256)", f"`{data['sha256']}`"],
            ["Sentences", str(data["sentences"])],
            ["Bootstrap", f"{run['bootstrap']['resamples']} resamples, seed {run['seed']}"],
            ["Thresholds", run["thresholds"]],
            ["Machine", machine_text],
            ["Libraries", libs],
        ],
        numeric_from=99,
    )
    rows = []
    for label, b in metrics["models"].items():
        own = b["data_is_its_test_split"]
        rows.append(
            [
                label,
                b["backend"],
                f"`{b['version']}`",
                b["encoder"] or "-",
                str(b["seed"]),
                str(b["created"]),
                f"`{(b['training_data_sha256'] or '?')[:16]}`",
                {True: "yes", False: "no", None: "unknown"}[own],
                f"`{b['path']}`",
            ]
        )
    doc.table(
        [
            "Model",
            "Backend",
            "Version",
            "Encoder",
            "Seed",
            "Trained (UTC)",
            "Training data SHA-256",
            "This file is its test split",
            "Folder",
        ],
        rows,
        numeric_from=99,
    )


def _glossary(doc: _Doc) -> None:
    doc.bullets(
        [
            "**Precision**: of the sentences a model tagged with a label, the share that "
            "truly have it. **Recall**: of the sentences that truly have it, the share the "
            "model found. **F1**: their harmonic mean.",
            "**Micro-F1**: F1 over all (sentence, category) decisions pooled; dominated by "
            "frequent labels. **Macro-F1**: the plain average of per-label F1; every label "
            "counts the same, rare ones included.",
            "**Subset accuracy**: share of sentences whose whole category set is exactly "
            "right. **Hamming loss**: share of the 8 per-sentence category decisions that "
            "are wrong.",
            "**95% CI**: the range the figure would likely fall in on another sample of "
            "sentences like these (percentile bootstrap over sentences).",
            "**p-value**: how often a difference this large would appear by chance if the "
            "two models were equally good; small (below 0.05) means the difference is "
            "unlikely to be chance.",
            "**ECE**: expected calibration error, the average gap between a model's stated "
            "probability and how often it is right.",
        ]
    )


def build_document(result: RunResult) -> _Doc:
    """The report as blocks, section by section (headline first)."""
    metrics, errors = result.metrics, result.errors
    run = metrics["run"]
    data = run["data"]
    doc = _Doc()
    doc.heading(1, "Model evaluation report")
    doc.para(
        f"{len(metrics['models'])} model(s) evaluated on `{Path(data['path']).name}` "
        f"({data['sentences']} sentences, data SHA-256 `{data['sha256'][:16]}`), "
        f"{run['date']}, seed {run['seed']}. Thresholds and model settings come from each "
        "model's own training (tuned on dev); nothing was tuned on this file."
    )
    overlap = run["overlap"]
    for label, info in overlap["by_model"].items():
        if info["sentences"]:
            doc.warning(
                f"{info['sentences']} of the {data['sentences']} sentences in this file were "
                f"used to train or tune **{label}** (the overlap check was overridden with "
                "`--allow-overlap`). Its figures below overstate how it does on new text and "
                "are not a fair test."
            )
    doc.heading(2, "Headline")
    _headline(doc, metrics)
    doc.heading(2, "Cross-validation")
    _cross_validation(doc, metrics)
    if metrics.get("ablation"):
        doc.heading(2, "Ablation")
        _ablation(doc, metrics)
    doc.heading(2, "Categories, per label")
    _per_label(doc, metrics)
    doc.image(FIG_PER_LABEL, "F1 per category and stance, one bar per model")
    doc.heading(2, "Stance")
    _stance(doc, metrics)
    doc.image(FIG_CONFUSION, "Stance confusion matrices (rows true, columns predicted)")
    doc.heading(2, "Is the difference significant?")
    _significance(doc, metrics)
    doc.heading(2, "Calibration")
    _calibration(doc, metrics)
    doc.image(FIG_RELIABILITY, "Reliability diagrams (dashed line = perfect calibration)")
    doc.heading(2, "Speed and size")
    _speed(doc, metrics)
    doc.heading(2, "Errors")
    _errors(doc, metrics, errors)
    doc.heading(2, "Warnings")
    doc.bullets(metrics["warnings"] or ["None."])
    doc.heading(2, "Provenance")
    _provenance(doc, metrics)
    doc.heading(2, "Glossary")
    _glossary(doc)
    doc.para(f"Machine-readable figures: `{METRICS_FILE}`.")
    return doc


def write_report(out: Path, result: RunResult) -> Path:
    """Write the whole run folder atomically (replacing any previous run there)."""
    metrics = result.metrics
    log.info("drawing charts")
    images = {
        FIG_PER_LABEL: chart_per_label(metrics),
        FIG_CONFUSION: chart_confusion(metrics),
        FIG_RELIABILITY: chart_reliability(metrics),
    }
    doc = build_document(result)
    with atomic_directory(Path(out)) as tmp:
        (tmp / METRICS_FILE).write_text(
            json.dumps(metrics, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        (tmp / ERRORS_FILE).write_text(
            "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in result.errors),
            encoding="utf-8",
        )
        for name, png in images.items():
            (tmp / name).write_bytes(png)
        (tmp / REPORT_MD).write_text(doc.markdown(), encoding="utf-8")
        (tmp / REPORT_HTML).write_text(
            doc.html("Model evaluation report", images), encoding="utf-8"
        )
    log.info("wrote %s", out)
    return Path(out)
