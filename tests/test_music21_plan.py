"""The music21 build plan at every size, without rendering (plan() reads only music21's metadata bundle)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from music_clip_data.music21.styles import CLASS_NAMES
from music_clip_data.sources.music21_corpus import (
    CAPTIONS_PER_GENRE_CLIP,
    SIZES,
    _chunk_id,
    _chunks,
    plan_parts,
    planned_windows,
)

FIXTURES = Path(__file__).parent / "fixtures"
# The genres config after _balance: every class capped at the size's genre_clips.
GENRE_CLIPS = {size: spec.genre_clips * len(CLASS_NAMES) for size, spec in SIZES.items()}


@pytest.mark.parametrize("size", list(SIZES))
def test_planned_captions_are_3x_the_genre_clips_from_more_pieces(size: str) -> None:
    first, more = plan_parts(size, seed=0)
    items = first + more
    genres = [p for p, role, _ in items if role == "genres"]
    captions = [(p, cap) for p, role, cap in items if role == "captions"]
    windows = sum(planned_windows(p, 0, cap) for p, cap in captions)
    # planned_windows is a lower bound (repeats only lengthen a piece); 5 % more covers failed pieces and
    # windows of rests only, which the small build shows are far fewer (test_music21_source).
    assert windows >= 1.05 * CAPTIONS_PER_GENRE_CLIP * GENRE_CLIPS[size], (size, windows)
    assert len({p.key for p, _ in captions}) > len(
        {p.key for p in genres}
    )  # planned genre pieces: an upper bound
    assert not {p.group_id for p in genres} & {p.group_id for p, _ in captions}
    assert all(not p.is_class or p.style != "classical_string_quartet" for p, _ in captions)


@pytest.mark.parametrize("size", list(SIZES))
def test_genre_chunks_are_those_of_6558419(size: str) -> None:
    """The genres config's chunks (ids hash every piece, role and window cap, in order) are 6558419's, at every
    size: FluidSynth renders a chunk's clips in one run, so a genre clip's audio is a function of its chunk (and
    `render_chunk`), and equal chunks give the same genre audio. The small build checks the samples themselves
    (test_music21_source.py); this is the cheap check for quick and full."""
    old = json.loads((FIXTURES / "music21_first_chunks_6558419.json").read_text())[size]
    first, _ = plan_parts(size, seed=0)
    assert [_chunk_id(c, 0) for c in _chunks(first)] == old
