"""Parse one corpus piece into a flat list of sounding notes, the only thing the MIDI writer needs.

Writing MIDI from flattened notes sidesteps music21's exporter, which raises on metre changes and some
repeats and is slow on long quartets. Grace notes and zero-length notes are dropped: they leave stuck notes
that keep FluidSynth rendering forever.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from music_clip_data.music21.styles import Piece


@dataclass
class Flattened:
    """Sounding notes of one piece: start and duration in quarter notes, MIDI pitch, voice (part) index."""

    starts: np.ndarray  # float64 (n,)
    durations: np.ndarray  # float64 (n,)
    pitches: np.ndarray  # int16 (n,)
    voices: np.ndarray  # int16 (n,)
    length_ql: float
    n_voices: int
    repeats_expanded: bool
    lyrics: str = ""
    language: str = ""
    facts: dict[str, Any] = field(default_factory=dict)


class _ExpansionFailed(Exception):
    """Repeat expansion failed part-way; the parsed score may be half-modified."""


def _expand_repeats(part: Any) -> tuple[Any, bool]:
    """`part` with its repeats played out, in place: the score is parsed for this call alone and dropped after.

    `Stream.expandRepeats` deep-copies every measure first, which was half the cost of expanding (a third of
    the build's parse time); `Expander.process(deepcopy=False)` gives the same notes without that copy.
    """
    from music21 import repeat

    try:
        expander = repeat.Expander(part)
        if not part.hasMeasures() or expander.isExpandable() is False:
            return part, False  # nothing was touched: play as written
    except Exception:  # music21 raises several types on malformed repeat structures
        return part, False
    try:
        return expander.process(deepcopy=False), True
    except Exception as err:
        raise _ExpansionFailed from err


def _expand_repeats_copying(part: Any) -> tuple[Any, bool]:
    try:
        return part.expandRepeats(), True
    except Exception:  # music21 raises several types on malformed repeat structures; play as written then
        return part, False


@lru_cache(maxsize=1)
def _language_detector() -> Any:
    from music21 import text

    return text.LanguageDetector()  # reads its trigram tables: 0.1 s, once per process


def _lyrics(score: Any) -> tuple[str, str]:
    """The first part's text that has lyrics, and its language as music21's trigram detector guesses it."""
    from music21 import text

    for part in score.parts:
        words = text.assembleLyrics(part)
        if words and len(words.split()) >= 3:
            words = " ".join(words.split())
            return words, _language_detector().mostLikelyLanguage(words) or ""
    return "", ""


# music21's repeat expansion costs several times the parse on long movements (6 s per quartet part) and only
# short pieces need it to fill a window (fiddle tunes grow 1.7-2.9x, chorales 1.2x): expand below this size.
EXPAND_REPEATS_MAX_NOTES = 1000


def _parse(piece: Piece) -> Any:
    """The score, parsed from source: music21's own cache would pickle every score to its scratch folder and
    read it back (a third of the parse time, and no pickle is a rule here)."""
    from pathlib import Path

    from music21 import converter, corpus

    if Path(piece.path).is_absolute():  # a score file outside the corpus
        return converter.parse(piece.path, forceSource=True)
    if piece.number:
        return corpus.parse(piece.path, number=piece.number, forceSource=True)
    return corpus.parse(piece.path, forceSource=True)


def flatten_piece(piece: Piece) -> Flattened:
    """Parse `piece` from the music21 corpus and flatten every part's notes onto one timeline."""
    try:
        return _flatten_score(piece, _parse(piece), _expand_repeats)
    except _ExpansionFailed:  # rare: parse again and expand on copies, so a failed part plays as written
        return _flatten_score(piece, _parse(piece), _expand_repeats_copying)


def _flatten_score(piece: Piece, score: Any, expand: Any) -> Flattened:
    parts = list(score.parts) or [score]
    lyrics, language = _lyrics(score) if parts and hasattr(score, "parts") else ("", "")
    starts, durs, pitches, voices = [], [], [], []
    expanded_all = True
    length = 0.0
    for v, part in enumerate(parts):
        if piece.note_count <= EXPAND_REPEATS_MAX_NOTES:
            played, expanded = expand(part)
        else:
            played, expanded = part, False
        expanded_all &= expanded
        length = max(length, float(played.highestTime))
        for el in played.flatten().notes:
            dur = float(el.duration.quarterLength)
            if el.duration.isGrace or dur <= 0:
                continue
            for p in el.pitches:
                starts.append(float(el.offset))
                durs.append(dur)
                pitches.append(int(p.midi))
                voices.append(v)
    if not starts:
        raise ValueError("no sounding notes after stripping grace and zero-length notes")
    order = np.argsort(np.asarray(starts), kind="stable")
    return Flattened(
        starts=np.asarray(starts, dtype=np.float64)[order],
        durations=np.asarray(durs, dtype=np.float64)[order],
        pitches=np.asarray(pitches, dtype=np.int16)[order],
        voices=np.asarray(voices, dtype=np.int16)[order],
        length_ql=length,
        n_voices=len(parts),
        repeats_expanded=expanded_all,
        lyrics=lyrics,
        language=language,
    )


def pitch_class_stream(flat: Flattened, start_ql: float, length_ql: float, transpose: int) -> Any:
    """The window's duration-weighted pitch-class profile as a stream, one note per pitch class: all that
    music21's key finder reads. None for a window with no notes."""
    from music21 import note, stream

    mask = (flat.starts < start_ql + length_ql) & (flat.starts + flat.durations > start_ql)
    if not mask.any():
        return None
    weights = np.zeros(12)
    np.add.at(weights, (flat.pitches[mask] + transpose) % 12, flat.durations[mask])
    s = stream.Stream()
    for pc, w in enumerate(weights):
        if w > 0:
            n = note.Note(60 + pc)
            n.duration.quarterLength = float(w)
            s.append(n)
    return s


def window_key(flat: Flattened, start_ql: float, length_ql: float, transpose: int) -> str:
    """Key and mode of the notes sounding in one window after transposition (Krumhansl-Schmuckler)."""
    from music21 import analysis

    s = pitch_class_stream(flat, start_ql, length_ql, transpose)
    if s is None:
        return ""
    # `process` gives getSolution's best key without building the 23 alternative Key objects (12x faster).
    (tonic, mode, _), _ = analysis.discrete.KrumhanslSchmuckler().process(s)
    return f"{tonic.name.replace('-', ' flat')} {mode}"
