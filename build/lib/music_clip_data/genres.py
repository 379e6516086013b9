"""Thesis Table 2: many sub-genre tags → one main genre by majority count of main-genre names inside the tags.

Rule (stated in the dataset card too):
- A tag counts a main genre once per occurrence of that name starting at a word boundary, after lower-casing
  and treating `-`, `_` and `/` as spaces: "garage rock" counts rock, "sheffield indie" counts indie,
  "pop rap" counts pop, "k-pop" counts pop, "metalcore" counts metal, "hip-hop" counts hip hop.
- The main genre with the most counts over all tags wins.
- Tie rule: among the tied genres, the one that is more often the *head* of a tag wins (the rightmost main-genre
  name in a tag, as in English compounds: "indie rock" is rock, "pop punk" is punk); if still tied, the one
  listed first in the main-genre list.
- No main genre in any tag → `None`: the track is excluded from the genres config and counted.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

THESIS_MAIN_GENRES: tuple[str, ...] = ("country", "hip hop", "indie", "metal", "pop", "punk", "rock")


def normalise_tag(tag: str) -> str:
    return " ".join(re.sub(r"[-_/]+", " ", tag.lower()).split())


def _patterns(main_genres: Sequence[str]) -> dict[str, re.Pattern[str]]:
    # Left word boundary only: a suffix may follow ("metalcore", "punks"), a prefix may not ("hip hop" ≠ "hop").
    return {g: re.compile(r"(?<![a-z0-9])" + re.escape(normalise_tag(g))) for g in main_genres}


def genre_counts(tags: Iterable[str], main_genres: Sequence[str] = THESIS_MAIN_GENRES) -> Counter[str]:
    """How many times each main genre is named inside the tags."""
    patterns = _patterns(main_genres)
    counts: Counter[str] = Counter()
    for tag in tags:
        text = normalise_tag(tag)
        for genre, pattern in patterns.items():
            hits = len(pattern.findall(text))
            if hits:
                counts[genre] += hits
    return counts


def _head_counts(tags: Iterable[str], main_genres: Sequence[str]) -> Counter[str]:
    patterns = _patterns(main_genres)
    heads: Counter[str] = Counter()
    for tag in tags:
        text = normalise_tag(tag)
        found = [(m.start(), g) for g, p in patterns.items() for m in p.finditer(text)]
        if found:
            heads[max(found)[1]] += 1
    return heads


def map_to_main_genre(tags: Iterable[str], main_genres: Sequence[str] = THESIS_MAIN_GENRES) -> str | None:
    """The majority main genre of a track's tags (tie rule in the module docstring), or None."""
    tags = [t for t in tags if t and t.strip()]
    counts = genre_counts(tags, main_genres)
    if not counts:
        return None
    best = max(counts.values())
    tied = [g for g in main_genres if counts[g] == best]
    if len(tied) == 1:
        return tied[0]
    heads = _head_counts(tags, main_genres)
    best_head = max(heads[g] for g in tied)
    return next(g for g in tied if heads[g] == best_head)
