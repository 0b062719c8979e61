"""The schema module must match the shared contract, name for name and in order."""

from __future__ import annotations

import json
import re

import pytest

from model.paths import shared_dir
from model.schema import CATEGORIES, CATEGORY_EN, SCHEMA_VERSION, SOURCES, STANCES


def test_schema_matches_shared_labels_json() -> None:
    path = shared_dir() / "labels.json"
    if not path.exists():
        pytest.skip(f"{path} not present (set NETRALITAS_SHARED)")
    shared = json.loads(path.read_text(encoding="utf-8"))
    assert shared["schema_version"] == SCHEMA_VERSION
    assert tuple(x["name"] for x in shared["categories"]["labels"]) == CATEGORIES
    assert tuple(x["name"] for x in shared["stance"]["labels"]) == STANCES
    assert {x["name"]: x["en"] for x in shared["categories"]["labels"]} == CATEGORY_EN


def test_sources_match_the_guideline() -> None:
    """Every source the code accepts is one the guideline's Records section names."""
    path = shared_dir() / "ANNOTATION.md"
    if not path.exists():
        pytest.skip(f"{path} not present (set NETRALITAS_SHARED)")
    records = path.read_text(encoding="utf-8").split("## Records", 1)[1]
    named = set(re.findall(r"`(\w+)`", records))
    assert set(SOURCES) <= named, set(SOURCES) - named
