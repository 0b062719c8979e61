"""The evaluators' private test set: what must never enter `data/`.

`../shared/holdout/holdout.json` lists SHA-256 hashes of the private set's page addresses
and sentences (normalised as its README says). The builder, the validator and the ingest
tool all ask this module, so the rule and its normalisation live in one place. A missing
list is an error, not a silent pass: a tool that cannot check must not pretend it did.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from data.records import DataError
from model.paths import shared_dir

# Sentences shorter than this (after normalisation) are not listed by the evaluators.
MIN_LISTED_WORDS = 6


def norm_url(url: str) -> str:
    """Host and path, lower-cased, without www./amp./m., `amp` segments, scheme or query."""
    s = urlsplit(url.strip())
    host = s.netloc.lower()
    for prefix in ("www.", "amp.", "m."):
        if host.startswith(prefix):
            host = host[len(prefix) :]
    path = "/".join(seg for seg in s.path.split("/") if seg and seg.lower() != "amp")
    return f"{host}/{path}".lower()


def norm_sentence(text: str) -> str:
    """NFKC, case-folded, punctuation to spaces, single-spaced."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = re.sub(r"[^\w]+", " ", text)
    return " ".join(text.split())


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def default_path() -> Path:
    """`$NETRALITAS_HOLDOUT`, else `holdout/holdout.json` in the shared folder."""
    env = os.environ.get("NETRALITAS_HOLDOUT")
    return Path(env) if env else shared_dir() / "holdout" / "holdout.json"


@dataclass(frozen=True)
class Holdout:
    """Hashes of the private test set's addresses and sentences."""

    url_hashes: frozenset[str]
    sentence_hashes: frozenset[str]
    source: str

    @classmethod
    def load(cls, path: Path | None = None) -> Holdout:
        path = Path(path) if path else default_path()
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            return cls(frozenset(raw["url_sha256"]), frozenset(raw["sentence_sha256"]), str(path))
        except FileNotFoundError as exc:
            raise DataError(
                f"holdout list not found at {path}: cannot check data against the evaluators' "
                "private test set (set NETRALITAS_HOLDOUT or put ../shared beside the checkout)"
            ) from exc
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DataError(f"holdout list {path} is unreadable: {exc}") from exc

    def url_listed(self, url: str) -> bool:
        return bool(url) and _sha(norm_url(url)) in self.url_hashes

    def sentence_listed(self, text: str) -> bool:
        return _sha(norm_sentence(text)) in self.sentence_hashes

    def article_problems(self, where: str, url: str | None, texts: list[str]) -> list[str]:
        """Why an article may not enter the data (empty when it may)."""
        problems = []
        if url and self.url_listed(url):
            problems.append(f"{where}: address {url} is on the evaluators' holdout list")
        hits = [t for t in texts if self.sentence_listed(t)]
        if hits:
            problems.append(
                f"{where}: {len(hits)} sentence(s) on the evaluators' holdout list, "
                f"first: {hits[0][:80]!r}"
            )
        return problems
