"""Shared pieces of the retraining-loop tests: a private dataset copy with some articles'
labels taken away (they play the newly ingested, unlabelled articles), the removed gold
labels as an annotator's answers, and Label Studio exports built from them."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from data.labelstudio import choices_result
from data.records import dumps_jsonl, read_jsonl

DATA = Path(__file__).resolve().parent.parent / "data"
# Training settings of the test suite's TF-IDF models (see conftest.TFIDF_TEST_SET).
SMALL_GRID = ["categories.C_grid=[2.0, 8.0]", "stance.C_grid=[2.0, 8.0]", "cv.folds=3"]


def copy_data(dst: Path) -> Path:
    """A private copy of the dataset sources, splits and card."""
    for part in ("raw", "labels", "authored", "splits"):
        shutil.copytree(DATA / part, dst / part)
    shutil.copy(DATA / "README.md", dst / "README.md")
    return dst


def train_articles(count: int, skip: int = 0) -> list[str]:
    """Ids of `count` corpus articles of the committed train split (sorted, after `skip`)."""
    ids = sorted(
        {r["article_id"] for r in read_jsonl(DATA / "splits" / "train.jsonl")}
        & {r["article_id"] for r in read_jsonl(DATA / "labels" / "corpus.jsonl")}
    )
    return ids[skip : skip + count]


def strip_labels(data_dir: Path, articles: list[str]) -> dict[str, dict]:
    """Remove the labels of `articles`; returns the removed records by sentence id."""
    path = data_dir / "labels" / "corpus.jsonl"
    records = read_jsonl(path)
    path.write_text(
        dumps_jsonl([r for r in records if r["article_id"] not in articles]), encoding="utf-8"
    )
    return {r["id"]: r for r in records if r["article_id"] in articles}


def gold_result(record: dict) -> list[dict]:
    """A Label Studio result list carrying a record's gold labels."""
    return choices_result(record["categories"], record["stance"])


def export_from_tasks(tasks: list[dict], annotations: dict[str, list[dict]]) -> list[dict]:
    """A Label Studio JSON export of `tasks`, shaped as the server writes it (ids, annotations
    with `completed_by`, `was_cancelled`, `ground_truth`), `annotations` by sentence id."""
    out, next_id = [], 1
    for number, task in enumerate(tasks, start=1):
        anns = []
        for ann in annotations.get(task["data"]["sentence_id"], []):
            anns.append(
                {
                    "id": next_id,
                    "completed_by": 1,
                    "result": ann["result"],
                    "was_cancelled": ann.get("was_cancelled", False),
                    "ground_truth": ann.get("ground_truth", False),
                }
            )
            next_id += 1
        out.append({"id": number, "data": task["data"], "annotations": anns, "predictions": []})
    return out


def without_labeller(text: str) -> str:
    """JSONL text with every `labeller` value blanked (imports differ only there)."""
    return re.sub(r'"labeller": "[^"]*"', '"labeller": ""', text)
