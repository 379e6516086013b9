"""The seven style classes and the corpus pieces behind them, read from music21's metadata cache.

Enumeration never parses a score: the corpus' metadata bundle gives titles, lengths and note counts, and the
Essen abc headers give each tune's catalogue code (tune families share a code stem).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

# Class name -> (human description used in captions and the card, corpus sources).
STYLES: dict[str, tuple[str, str]] = {
    "renaissance_mass": ("Renaissance mass", "Palestrina mass sections"),
    "medieval_trecento": ("medieval trecento song", "trecento, Ciconia, Luca"),
    "baroque_chorale": ("Baroque chorale", "Bach chorale harmonisations"),
    "classical_string_quartet": ("Classical string quartet", "Haydn, Mozart and Beethoven quartet movements"),
    "british_irish_fiddle": ("British and Irish fiddle tune", "O'Neill's 1850, Ryan's Mammoth, Aird's Airs"),
    "german_folk_song": ("German folk song", "Essen folksong collection, German-language books"),
    "chinese_folk_song": ("Chinese folk song", "Essen folksong collection, Han Chinese books"),
}
CLASS_NAMES: list[str] = list(STYLES)

_GERMAN_BOOKS = ("altdeu", "ballad", "boehme", "dva", "erk", "fink", "kinder", "zuccal")
_FIDDLE_DIRS = ("oneills1850", "ryansMammoth", "airdsAirs")
_QUARTET_DIRS = ("haydn", "mozart", "beethoven")
_NOT_QUARTETS = ("mozart/k545",)  # a piano sonata among Mozart's quartets
# Pieces outside the seven classes that still make good caption pairs (style named in their captions).
CAPTION_EXTRAS: dict[str, str] = {
    "monteverdi": "Italian madrigal",
    "josquin": "Renaissance motet",
    "corelli": "Baroque trio sonata",
    "chopin": "Romantic piano mazurka",
    "schumann_robert": "Romantic piano piece",
    "schumann_clara": "Romantic piano piece",
    "schubert": "Romantic song",
    "joplin": "ragtime",
    "handel": "Baroque aria",
    "cpebach": "Classical keyboard sonata",
    "miscFolk": "American and Northumbrian folk tune",
}
_DANCES = (
    "reel",
    "jig",
    "hornpipe",
    "strathspey",
    "march",
    "waltz",
    "polka",
    "slide",
    "quickstep",
    "quick step",
    "set dance",
    "air",
    "minuet",
    "gavotte",
    "fling",
    "lament",
    "planxty",
    "mazurka",
)


@dataclass(frozen=True)
class Piece:
    """One corpus piece (a file, or one tune of an abc opus file) and what we know without parsing it."""

    key: str  # unique: corpus path, plus '#number' inside abc opus files
    path: str  # corpus-relative path
    number: int | None
    style: str  # class name, or a CAPTION_EXTRAS description for caption-only pieces
    group_id: str
    title: str
    composer: str
    collection: str
    length_ql: float  # score length in quarter notes before repeats (0 if unknown)
    note_count: int
    facts: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def is_class(self) -> bool:
        return self.style in STYLES


def dance_type(title: str, rhythm: str = "") -> str:
    """The dance named in a tune's title or abc R: field ('' if none)."""
    text = f"{title} {rhythm}".lower()
    for dance in _DANCES:
        if re.search(rf"\b{dance}s?\b", text):
            return "quickstep" if dance == "quick step" else dance
    return ""


def _norm_title(title: str) -> str:
    title = title.lower().split("--")[0]
    title = re.sub(r"^(the|a|an)\s+", "", title.strip())
    return re.sub(r"[^a-z0-9]+", "", title)


@lru_cache(maxsize=64)
def _abc_headers(abs_path: str) -> dict[int, dict[str, str]]:
    """X: number -> first N:, O:, R: header fields of each tune in an abc file (cheap text scan)."""
    out: dict[int, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in Path(abs_path).read_text(encoding="latin-1").splitlines():
        if line.startswith("X:"):
            digits = re.sub(r"\D", "", line[2:])
            current = out.setdefault(int(digits), {}) if digits else None
        elif current is not None and len(line) > 2 and line[1] == ":" and line[0] in "NORT":
            current.setdefault(line[0], line[2:].strip().rstrip("]"))
    return out


def _style_of(path: str, meta: dict[str, Any]) -> str | None:
    top = path.split("/")[0]
    name = Path(path).name
    if top == "palestrina":
        return "renaissance_mass"
    if top in ("trecento", "ciconia", "luca"):
        return "medieval_trecento"
    if top == "bach" and name.startswith("bwv"):
        return "baroque_chorale"
    if top in _QUARTET_DIRS and not path.startswith(_NOT_QUARTETS) and meta.get("numberOfParts") == 4:
        return "classical_string_quartet"
    if top in _FIDDLE_DIRS:
        return "british_irish_fiddle"
    if top == "essenFolksong":
        if name.startswith(_GERMAN_BOOKS):
            return "german_folk_song"
        if name.startswith("han"):
            return "chinese_folk_song"
        return None
    return CAPTION_EXTRAS.get(top)


def _group_of(style: str, path: str, meta: dict[str, Any], abc: dict[str, str]) -> str:
    stem = Path(path).stem
    if style == "renaissance_mass":
        return "mass:" + str(meta.get("parentTitle") or stem)
    if style == "baroque_chorale":
        return "bwv:" + re.sub(r"\D.*$", "", stem[3:])  # bwv26.6 and bwv26.6-sc share BWV 26
    if style == "classical_string_quartet":
        parts = path.split("/")
        return "work:" + "/".join(parts[:2]).removesuffix(
            Path(path).suffix
        )  # opus18no1/movementN -> opus18no1
    if style == "medieval_trecento":
        return "piece:" + re.sub(r"(\d+)[a-z]\b", r"\1", stem)  # PMFC 03a/03b are one piece
    if style == "british_irish_fiddle":
        return "tune:" + _norm_title(str(meta.get("title") or stem))  # same tune across collections
    if style in ("german_folk_song", "chinese_folk_song") and abc.get("N"):
        return "essen:" + re.sub(r"[A-Za-z]+$", "", abc["N"].split()[0])  # Q0001 and Q0001A: one family
    return f"piece:{path}#{meta.get('number') or ''}"


@lru_cache(maxsize=1)
def corpus_pieces() -> tuple[Piece, ...]:
    """Every usable corpus piece with its class (or caption-extra style) and group."""
    from music21 import corpus, metadata

    root = Path(corpus.__file__).parent
    seen_paths: set[str] = set()
    pieces: list[Piece] = []
    bundle = metadata.bundles.MetadataBundle("core").read()
    for entry in bundle[:]:  # one slice: the bundle's own iteration is quadratic
        md = entry.metadata
        path = str(entry.sourcePath)
        if md is None or path.endswith((".rntxt", ".mus")):
            continue
        meta = dict(md.all())
        style = _style_of(path, meta)
        if style is None:
            continue
        number = int(entry.number) if entry.number else None
        if path.endswith(".krn") and Path(path).with_suffix(".mxl").as_posix() in _all_paths():
            continue  # same movement also as MusicXML: keep one copy
        if "-sc" in path and path.replace("-sc", "") in _all_paths():
            continue
        key = f"{path}#{number}" if path.endswith(".abc") and number is not None else path
        if key in seen_paths:
            continue
        seen_paths.add(key)
        abc = _abc_headers(str(root / path)).get(number, {}) if path.endswith(".abc") and number else {}
        title = str(md.title or meta.get("movementName") or Path(path).stem)
        if style == "classical_string_quartet":  # quartet titles are bare numbers; movement names say more
            title = f"{meta.get('movementName') or title} ({Path(path).stem})"
        title = " ".join(title.split())
        composer = " ".join(str(md.composer or "").split())
        facts = {
            "locale": str(meta.get("localeOfComposition") or abc.get("O") or ""),
            "function": abc.get("R", ""),
            "parent_title": str(meta.get("parentTitle") or ""),
            "parts": int(meta.get("numberOfParts") or 1),
            "marked_tempo": str(meta.get("tempoFirst") or ""),
            "time_signature": str(meta.get("timeSignatureFirst") or ""),
            "dance": dance_type(title, abc.get("R", "")),
        }
        pieces.append(
            Piece(
                key=key,
                path=path,
                number=number,
                style=style,
                group_id=_group_of(style, path, meta, abc),
                title=title,
                composer=composer,
                collection=path.split("/")[0],
                length_ql=float(meta.get("scoreQuarterLength") or 0.0),
                note_count=int(meta.get("noteCount") or 0),
                facts=facts,
            )
        )
    return tuple(pieces)


@lru_cache(maxsize=1)
def _all_paths() -> frozenset[str]:
    from music21 import corpus

    root = Path(corpus.__file__).parent
    return frozenset(str(p.relative_to(root)) for p in corpus.getCorePaths())
