"""Indonesian sentence splitting and boilerplate dropping: the one place for both rules.

The dataset builder and `predict.py` both call `split_sentences`, so a sentence seen at
training time is cut exactly as the same sentence arriving from a monitoring tool.
The rules follow `../shared/ANNOTATION.md`:

- lines are paragraphs; a headline (a line without a final stop) is a sentence of its own;
- inside a paragraph a sentence ends at `.`, `!` or `?` (optionally followed by closing
  quotes or brackets) when whitespace and an upper-case letter, digit or opening quote
  follow; never after a known abbreviation (Pj., Pjs., AKBP, Kab., No., dll., ...) or a
  single capital initial, and never inside numbers or dates such as `(22/11/2024)`;
- a quoted statement keeps its attribution (`"...," ucap Deny.`), because a lower-case
  continuation never starts a sentence;
- a trailing day-and-date fragment (`Jum'at (22/11/2024).`) joins the sentence before it;
- boilerplate lines (`Baca Juga:`, `Editor :`, `Reporter :`, `Kategori :`, datelines such as
  `Rabu 23 Oct 2024 - 20:31 WIB`, `(***)`, `(red)`) are dropped, as are a leading dateline
  prefix (`KOTA KEDIRI - `, `Kediri, HNN - `) and closing markers (`(*)`, `(red)`).

Every sentence keeps its character offsets into the input, so callers can point back to
the exact place in the article.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Lower-cased tokens that end with a period but do not end a sentence.
ABBREVIATIONS: frozenset[str] = frozenset(
    """
    pj pjs plt plh akbp akp kompol kombes kapt brigjen mayjen letjen jend kol letkol
    ipda iptu aipda aiptu bripka brigpol bripda serda serka sertu kopda praka
    kab kec kel prov no jl jln gg tgl bpk sdr sdri
    dll dsb dst dkk drs dra dr prof ir hj msi mpd spd
    tbk pt cv rp a.n u.p vs ttd
    """.split()  # noqa: SIM905 -- a word list reads better than 70 quoted strings
)

_DAYS = r"(?:Senin|Selasa|Rabu|Kamis|Jum['’]?at|Sabtu|Minggu|Ahad)"
_MONTHS = r"(?:Jan|Feb|Mar|Apr|Mei|May|Jun|Jul|Agu|Agt|Aug|Sep|Okt|Oct|Nov|Des|Dec)[a-z]*"

_BOILERPLATE_LINE = re.compile(
    r"""^\s*(?:
        (?:baca\s+juga|lihat\s+juga|simak\s+juga)\s*:.*                       # cross-links
      | (?:editor|reporter|penulis|pewarta|redaktur|kategori|sumber|foto|tags?)\s*:.*
      | \(\s*(?:\*+|red|rd|adv)\s*\)\s*                                    # (***), (red)
      | """
    + _DAYS
    + r""",?\s+\d{1,2}\s+"""
    + _MONTHS
    + r"""\s+\d{4}(?:\s*[-–—|,]?\s*\d{1,2}[:.]\d{2}(?:\s*(?:WIB|WITA|WIT))?)?\s*   # dateline
    )$""",
    re.IGNORECASE | re.VERBOSE,
)

# "KOTA KEDIRI - ", "JAMBI - ", "Kediri, HNN - ", "KabarBaik.co – " at a paragraph's start.
_DATELINE_PREFIX = re.compile(
    r"""^(?:
        [A-Z][A-Z .]{1,40}                       # all-caps place
      | [A-Z][\w]*\.(?:co|com|id|net)(?:\.id)?   # outlet domain
      | [A-Z][a-z]+(?:\s[A-Z][a-z]+)?,\s*[A-Z][\w.]{1,20}  # Place, OUTLET
    )\s*[-–—]\s+""",
    re.VERBOSE,
)

_CLOSING_MARKER = re.compile(r"\s*\(\s*(?:\*+|red|rd|adv)\s*\)\s*$", re.IGNORECASE)

# Candidate sentence ends: terminal punctuation plus any closing quotes/brackets.
_END = re.compile(r"[.!?]+[\"”’'»)\]]*(?=\s)")
_STARTS_SENTENCE = re.compile(r"\s+[\"“‘'«(\[]?[A-Z0-9]")
_DATE_FRAGMENT = re.compile(
    r"^(?:" + _DAYS + r"\s*,?\s*)?\(\s*\d{1,2}/\d{1,2}(?:/\d{2,4})?\s*\)\s*\.?$"
)
_WORD_BEFORE = re.compile(r"([A-Za-z][A-Za-z.'’]*)$")


@dataclass(frozen=True)
class Sentence:
    """A sentence and its half-open character span `[start, end)` in the input text."""

    text: str
    start: int
    end: int


def is_boilerplate(line: str) -> bool:
    """True for a whole line that is never annotated (cross-links, bylines, datelines)."""
    return bool(_BOILERPLATE_LINE.match(line))


def _is_abbreviation(before: str) -> bool:
    """True when the text before a period ends in an abbreviation or an initial."""
    m = _WORD_BEFORE.search(before)
    if not m:
        return False
    word = m.group(1).rstrip(".")
    if len(word) == 1 and word.isupper():
        return True  # initials: "H. Ahmad", "M. Yusuf"
    return word.lower() in ABBREVIATIONS


def _split_paragraph(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Split `text[start:end]` at sentence ends; returns spans in input coordinates."""
    spans: list[tuple[int, int]] = []
    cut = start
    for m in _END.finditer(text, start, end):
        if not _STARTS_SENTENCE.match(text, m.end(), end):
            continue
        single_period = m.group().rstrip("\"”’'»)]") == "."
        if single_period and _is_abbreviation(text[cut : m.start()]):
            continue
        spans.append((cut, m.end()))
        cut = m.end()
        while cut < end and text[cut].isspace():
            cut += 1
    if cut < end:
        spans.append((cut, end))
    return spans


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    """Shrink a span past surrounding whitespace and trailing `(*)`/`(red)` markers."""
    marker = _CLOSING_MARKER.search(text, start, end)
    if marker:
        end = marker.start()
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def split_sentences(text: str) -> list[Sentence]:
    """Split an article (or a single sentence) into annotatable sentences with offsets."""
    out: list[tuple[int, int]] = []
    pos = 0
    for line in text.splitlines(keepends=True):
        line_start, pos = pos, pos + len(line)
        body = line.rstrip("\r\n")
        if not body.strip() or is_boilerplate(body):
            continue
        p_start, p_end = _trim(text, line_start, line_start + len(body))
        prefix = _DATELINE_PREFIX.match(text[p_start:p_end])
        if prefix and prefix.end() < p_end - p_start:
            p_start += prefix.end()
        for s, e in _split_paragraph(text, p_start, p_end):
            s, e = _trim(text, s, e)
            if s >= e:
                continue
            if out and _DATE_FRAGMENT.match(text[s:e]):
                out[-1] = (out[-1][0], e)  # "…," ucap Deny. Jum'at (22/11/2024).
                continue
            out.append((s, e))
    return [Sentence(text[s:e], s, e) for s, e in out]
