"""The music21 corpus source end to end: real scores, real FluidSynth renders, real files on disk."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from music_clip_data.music21 import midi as m21midi  # noqa: E402
from music_clip_data.music21.notes import flatten_piece  # noqa: E402
from music_clip_data.music21.render import RenderError, render_midi  # noqa: E402
from music_clip_data.music21.styles import CLASS_NAMES  # noqa: E402
from music_clip_data.sources.music21_corpus import (  # noqa: E402
    Music21Source,
    pieces_from_files,
    render_chunk,
)

pytestmark = pytest.mark.skipif(shutil.which("fluidsynth") is None, reason="fluidsynth not installed")


@pytest.fixture(scope="session")
def small(small_music21: tuple[Music21Source, list]) -> tuple[Music21Source, list]:
    return small_music21


def test_small_has_all_classes_and_playable_clips(small: tuple[Music21Source, list]) -> None:
    source, tracks = small
    summary = source.summary()
    genres = [t for t in tracks if t.role == "genres"]
    captions = [t for t in tracks if t.role == "captions"]
    assert {t.genre for t in genres} == set(CLASS_NAMES)
    assert all(n >= 12 for n in summary["genre_clips_per_class"].values()), summary
    assert all(n >= 3 for n in summary["genre_groups_per_class"].values()), (
        summary
    )  # a grouped split needs groups
    assert len(captions) >= 20 and all(t.genre is None for t in captions)
    assert len({t.track_id for t in tracks}) == len(tracks)
    for t in tracks[:: max(1, len(tracks) // 10)]:
        info = sf.info(t.audio_path)
        assert (info.samplerate, info.channels, info.format) == (16000, 1, "FLAC")
        assert info.duration == pytest.approx(15.0, abs=0.01)
        audio, _ = sf.read(t.audio_path)
        assert np.abs(audio).max() > 0.01  # not silence
    for t in captions:
        assert len(t.template_sentences) == 3 and all(s.endswith(".") for s in t.template_sentences)
    texted = [t for t in tracks if t.lyrics]
    assert texted, "Bach chorales and trecento songs carry text"
    assert any(t.lyrics.split()[0] in t.template_sentences[1] for t in texted)
    card = source.card_section()
    assert "TimGM6mb" in card and "GPL-2" in card and "MIT" in card and "one melodic line" in card


def test_groups_disjoint_between_roles(small: tuple[Music21Source, list]) -> None:
    _, tracks = small
    genre_groups = {t.group_id for t in tracks if t.role == "genres"}
    caption_groups = {t.group_id for t in tracks if t.role == "captions"}
    assert genre_groups and caption_groups and not genre_groups & caption_groups
    # one group never spans two classes either
    by_group: dict[str, set] = {}
    for t in tracks:
        if t.role == "genres":
            by_group.setdefault(t.group_id, set()).add(t.genre)
    assert all(len(v) == 1 for v in by_group.values())


def test_small_genres_are_the_audio_of_6558419(small: tuple[Music21Source, list]) -> None:
    """Same genre track ids and samples as before captions grew (issue 16): baselines stay comparable."""
    import hashlib

    _, tracks = small
    fixture = Path(__file__).parent / "fixtures" / "music21_small_genres_6558419.json"
    want = json.loads(fixture.read_text())["genres"]
    got = {}
    for t in tracks:
        if t.role == "genres":
            audio, _ = sf.read(t.audio_path, dtype="int16")
            got[t.track_id] = hashlib.sha256(audio.tobytes()).hexdigest()
    assert sorted(got) == sorted(want)
    assert got == want


def test_small_captions_are_3x_the_genre_audio_from_more_pieces(small: tuple[Music21Source, list]) -> None:
    from music_clip_data.sources.music21_corpus import CAPTIONS_PER_GENRE_CLIP, plan, planned_windows

    source, tracks = small
    genres = [t for t in tracks if t.role == "genres"]
    captions = [t for t in tracks if t.role == "captions"]
    seconds = {role: sum(sf.info(t.audio_path).duration for t in ts) for role, ts in
               (("captions", captions), ("genres", genres))}  # fmt: skip
    assert seconds["captions"] >= CAPTIONS_PER_GENRE_CLIP * seconds["genres"], seconds
    pieces = {
        role: {t.metadata["piece"] for t in ts} for role, ts in (("captions", captions), ("genres", genres))
    }
    assert len(pieces["captions"]) > len(pieces["genres"])
    summary = source.summary()
    assert summary["caption_pieces"] == len(pieces["captions"]) and summary["captions_per_genre_clip"] >= 3
    # The plan's window estimate (what the quick and full plan tests assert on) is a lower bound of the build.
    built = {p: sum(t.metadata["piece"] == p for t in captions) for p in pieces["captions"]}
    planned = {p.key: planned_windows(p, 0, cap) for p, role, cap in plan("small", 0) if role == "captions"}
    assert sum(built.values()) >= sum(planned.values())
    assert sum(built.get(k, 0) < n for k, n in planned.items()) <= 0.05 * len(planned)


def _features(tracks: list, extra: str | None = None) -> np.ndarray:
    from music_clip_data.sources.music21_corpus import FONTS, PROGRAMS

    rows = []
    for t in tracks:
        m = t.metadata
        row = [m["program"] == p for p in PROGRAMS] + [m["soundfont"] == f for f in FONTS]
        row += [m["tempo_bpm"], m["transpose"], m["loudness_lufs"]]
        rows.append(row + ([m[extra]] if extra else []))
    return np.asarray(rows, dtype=float)


def test_render_metadata_alone_is_at_chance(small: tuple[Music21Source, list]) -> None:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import GroupKFold, cross_val_score

    _, tracks = small
    genres = [t for t in tracks if t.role == "genres"]
    y = [t.genre for t in genres]
    groups = [t.group_id for t in genres]
    clf = RandomForestClassifier(n_estimators=80, random_state=0)

    def score(x: np.ndarray) -> float:
        return float(cross_val_score(clf, x, y, groups=groups, cv=GroupKFold(n_splits=4)).mean())

    render_only = score(_features(genres))
    assert render_only < 0.30, (
        f"render parameters predict the class: accuracy {render_only:.2f} (chance 0.14)"
    )
    # Positive control: the same classifier does find a real musical confound (voice count) when given it.
    assert score(_features(genres, extra="voices")) > render_only + 0.15
    loud = np.array([t.metadata["loudness_lufs"] for t in genres])
    assert np.median(np.abs(loud + 23.0)) < 0.5  # clips are loudness-normalised


def test_broken_piece_is_recorded_and_grace_notes_do_not_hang(tmp_path: Path) -> None:
    from music21 import note, stream

    broken = tmp_path / "broken.musicxml"
    broken.write_text("<?xml version='1.0'?><score-partwise><part id='P1'><measure number='1'><note>")
    melody = stream.Part()
    for pitch in ["C4", "D4", "E4", "F4", "G4", "A4", "B4", "C5"] * 2:
        grace = note.Note(pitch).getGrace()  # zero-length grace notes: the synthesizer's stuck-note trap
        melody.append([grace, note.Note(pitch, quarterLength=1.0)])
    graced = tmp_path / "graced.musicxml"
    stream.Score([melody]).write("musicxml", fp=graced)

    pieces = pieces_from_files([broken, graced])
    out = tmp_path / "clips"
    out.mkdir()
    result = render_chunk([(p, "captions", 2) for p in pieces], seed=0, out_dir=out)
    assert [f["path"] for f in result["failures"]] == [str(broken)]
    assert "parse failed" in result["failures"][0]["reason"]
    assert [c["metadata"]["piece"] for c in result["clips"]] == [str(graced)]
    assert sf.info(out / result["clips"][0]["file"]).duration == pytest.approx(15.0, abs=0.01)
    assert all(d > 0 for d in flatten_piece(pieces[1]).durations)


def test_render_is_bounded_in_size_and_time(tmp_path: Path) -> None:
    notes = m21midi.ClipNotes(np.array([0.0]), np.array([14.0]), np.array([60]), np.array([0]))
    mid = tmp_path / "long.mid"
    m21midi.write_batch(mid, [(notes, 0)] * 20, clip_s=15.0, gap_s=1.0)  # 320 s of audio, ~20 MB as WAV
    with pytest.raises(RenderError, match="byte cap"):
        render_midi(mid, tmp_path / "a.wav", "TimGM6mb", timeout_s=60, max_bytes=200_000)
    assert not (tmp_path / "a.wav").exists()
    with pytest.raises(RenderError, match="timed out"):
        render_midi(mid, tmp_path / "b.wav", "TimGM6mb", timeout_s=0.01, max_bytes=10**9)


def test_resume_after_interrupt_renders_only_missing_chunks(
    small: tuple[Music21Source, list], tmp_path: Path
) -> None:
    source, tracks = small
    copy = tmp_path / "cache"
    shutil.copytree(source.dir.parent, copy)
    manifest = copy / source.dir.name / "manifest.jsonl"
    rows = [json.loads(x) for x in manifest.read_text().splitlines()]
    cheapest = min(
        range(len(rows)), key=lambda i: rows[i]["timings"]["parse_s"] + rows[i]["timings"]["render_s"]
    )
    kept = [r for i, r in enumerate(rows) if i != cheapest]
    # A kill: the cheapest chunk never finished and its last line was cut mid-write.
    manifest.write_text("".join(json.dumps(r) + "\n" for r in kept) + '{"chunk": "cut-mid-wr')
    stamps = {p: p.stat().st_mtime_ns for p in manifest.parent.glob("*.flac")}

    resumed = Music21Source("small", copy, workers=1, seed=0, progress=False)
    again = list(resumed)
    assert resumed.summary()["chunks_rendered"] == 1
    assert [t.track_id for t in again] == [t.track_id for t in tracks]
    kept_files = {c["file"] for r in kept for c in r["clips"]}
    for path, stamp in stamps.items():
        if path.name in kept_files:
            assert path.stat().st_mtime_ns == stamp, f"{path.name} was rendered again"


def test_parse_writes_no_pickle_and_in_place_repeats_match_copied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """flatten_piece parses from source (music21's cache pickles every score to its scratch folder and reads it
    back, a third of the parse time) and expands repeats without deep copies, with the notes of the copying
    expansion (the genres config must not change)."""
    import tempfile

    from music_clip_data.music21 import notes
    from music_clip_data.music21.styles import corpus_pieces

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # music21's default scratch folder lives here
    tune = next(p for p in corpus_pieces() if p.key == "airdsAirs/book1.abc#2")
    flat = flatten_piece(tune)
    assert not list(tmp_path.rglob("*.p*")), list(tmp_path.rglob("*"))
    copied = notes._flatten_score(tune, notes._parse(tune), notes._expand_repeats_copying)
    assert flat.repeats_expanded and flat.length_ql > tune.length_ql  # the tune's repeats were played out
    for name in ("starts", "durations", "pitches", "voices"):
        np.testing.assert_array_equal(getattr(flat, name), getattr(copied, name))
    assert flat.length_ql == copied.length_ql


def test_window_key_is_music21s_best_key() -> None:
    """window_key skips the 23 alternative keys music21's getSolution builds; the answer must be its best key."""
    from music21 import analysis

    from music_clip_data.music21.notes import pitch_class_stream, window_key
    from music_clip_data.music21.styles import corpus_pieces

    flat = flatten_piece(next(p for p in corpus_pieces() if p.key == "airdsAirs/book1.abc#2"))
    rng = np.random.default_rng(0)
    for _ in range(12):
        start, transpose = float(rng.uniform(0, flat.length_ql - 20)), int(rng.integers(-5, 7))
        k = analysis.discrete.KrumhanslSchmuckler().getSolution(
            pitch_class_stream(flat, start, 20, transpose)
        )
        assert window_key(flat, start, 20, transpose) == f"{k.tonic.name.replace('-', ' flat')} {k.mode}"
