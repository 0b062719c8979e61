"""Group articles into stories: one event, however many outlets republished it.

Outlets copy press releases and each other, so two pages of one event share whole
sentences or most of their wording. Splitting by page would put copies of one story in
train and test and flatter every model; splitting by story does not. Two articles belong
to one story when they share a long sentence, when their word 4-gram shingles overlap
strongly, or when the article metadata names the same `story` by hand (for copies that were
reworded beyond what text overlap catches). Groups are closed under these links
(union-find), and a story's id is its smallest article id, so ids stay put as articles are
added.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from data.holdout import norm_sentence

# A shared sentence this long is a copy, not a coincidence ("ASN harus netral" is not).
SHARED_SENTENCE_WORDS = 10
SHINGLE = 4
# Jaccard of word 4-gram sets above which two articles tell the same story.
SHINGLE_JACCARD = 0.25


def _shingles(sentences: Sequence[str]) -> frozenset[tuple[str, ...]]:
    words = " ".join(norm_sentence(s) for s in sentences).split()
    return frozenset(tuple(words[i : i + SHINGLE]) for i in range(len(words) - SHINGLE + 1))


def cluster_stories(
    sentences: Mapping[str, Sequence[str]], manual: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Map each article id to its story id (the smallest article id in its group).

    `sentences` gives each article's sentences; `manual` maps article ids to a hand-given
    story key (articles with the same key are joined).
    """
    ids = sorted(sentences)
    parent = {a: a for a in ids}

    def find(a: str) -> str:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    def union(a: str, b: str) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    owner: dict[str, str] = {}
    for a in ids:
        for s in sentences[a]:
            norm = norm_sentence(s)
            if len(norm.split()) >= SHARED_SENTENCE_WORDS:
                if norm in owner:
                    union(owner[norm], a)
                else:
                    owner[norm] = a
    shingles = {a: _shingles(sentences[a]) for a in ids}
    for i, a in enumerate(ids):
        for b in ids[i + 1 :]:
            sa, sb = shingles[a], shingles[b]
            if sa and sb and len(sa & sb) / len(sa | sb) >= SHINGLE_JACCARD:
                union(a, b)
    by_key: dict[str, str] = {}
    for a, key in sorted((manual or {}).items()):
        if a in parent and key:
            if key in by_key:
                union(by_key[key], a)
            else:
                by_key[key] = a
    return {a: find(a) for a in ids}


def duplicate_positions(
    sentences: Mapping[str, Sequence[str]], story_of: Mapping[str, str]
) -> dict[str, set[int]]:
    """Positions to drop: a sentence already seen (normalised) earlier in its story.

    Articles are read in id order, so the first copy of a sentence is the one kept.
    """
    seen: dict[str, set[str]] = {}
    drop: dict[str, set[int]] = {}
    for a in sorted(sentences):
        story_seen = seen.setdefault(story_of[a], set())
        for pos, s in enumerate(sentences[a]):
            norm = norm_sentence(s)
            if norm in story_seen:
                drop.setdefault(a, set()).add(pos)
            else:
                story_seen.add(norm)
    return drop
