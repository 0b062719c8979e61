"""The label schema: the one place in code that names categories and stances.

The names are the contract with every tool that reads our output (`../shared/labels.json`).
They are copied here, not read at run time, so that an installed model or `predict.py`
works without `../shared`; `tests/test_schema.py` checks the copy against the shared file.
"""

from __future__ import annotations

SCHEMA_VERSION = 1

CATEGORIES: tuple[str, ...] = (
    "kampanye",
    "media_sosial",
    "politik_uang",
    "mobilisasi_massa",
    "penyalahgunaan_wewenang",
    "intimidasi",
    "partai_politik",
    "hoaks_ujaran_kebencian",
)

STANCES: tuple[str, ...] = ("pro", "kontra", "netral")

CATEGORY_EN: dict[str, str] = {
    "kampanye": "campaign involvement",
    "media_sosial": "partisan social-media activity",
    "politik_uang": "money politics and campaign funding",
    "mobilisasi_massa": "mobilising people or votes",
    "penyalahgunaan_wewenang": "abuse of office, budget or state facilities",
    "intimidasi": "intimidation and coercion",
    "partai_politik": "party membership and candidacy",
    "hoaks_ujaran_kebencian": "hoaxes and hate speech",
}

STANCE_EN: dict[str, str] = {
    "pro": "upholds neutrality",
    "kontra": "reports or shows a breach",
    "netral": "neither",
}

SOURCES: tuple[str, ...] = ("seed", "corpus", "authored")
