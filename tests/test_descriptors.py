"""Audio descriptors: right on audio whose tempo and key are known, on every built row, cached, and in words."""

from __future__ import annotations

import json
from pathlib import Path

import mir_eval
import numpy as np
import pytest
from conftest import copy_mood_folders
from datasets import load_dataset

import build_dataset
from audio_music_clip import load_waveform
from music_clip_data import descriptors
from music_clip_data.captioning import CaptionInput, template_caption
from music_clip_data.descriptors import DESCRIPTOR_COLUMNS, describe, in_words
from music_clip_data.sources.immich import per_track_facts

SR = 16000
# Generated tracks with the tempo and key of their generation prompt (the wheel's LICENSE-MUSIC) at 68, 99 and
# 110 BPM. Not every track is measured right (accuracy over all of them: benchmarks/bench_descriptors.py).
KNOWN = ("calm_acoustic_1.opus", "tender_electronic_1.opus", "happy_acoustic_1.opus")


@pytest.mark.parametrize("name", KNOWN)
def test_tempo_and_key_of_real_tracks_match_their_known_values(name: str, immich_tracks: list[Path]) -> None:
    truth = per_track_facts()[name]
    path = next(p for p in immich_tracks if p.name == name)
    measured = describe(load_waveform(str(path), target_rate=SR), SR)
    # Within 4 %, a tempo octave (x2, x1/2) allowed: the MIREX Acc2 criterion.
    assert any(abs(measured["tempo_bpm"] - truth["bpm"] * f) <= 0.04 * truth["bpm"] * f for f in (1, 2, 0.5))
    assert mir_eval.key.weighted_score(truth["key"], measured["key"]) >= 0.5, measured["key"]


def test_loudness_brightness_and_onsets_mean_what_they_say() -> None:
    t = np.arange(10 * SR) / SR
    tone = (0.1 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)  # -20 dBFS peak
    measured = describe(tone, SR)
    assert measured["loudness_lufs"] == pytest.approx(
        -23.0, abs=0.2
    )  # BS.1770: a 1 kHz sine reads 3 dB under
    assert measured["brightness_hz"] == pytest.approx(1000, rel=0.05)
    clicks = np.zeros_like(t)
    clicks[(np.arange(0, 10, 0.5) * SR).astype(int)] = 0.9  # 2 clicks a second: 120 BPM
    measured = describe((0.2 * tone + np.convolve(clicks, np.hanning(64), "same")).astype(np.float32), SR)
    assert measured["onset_rate"] == pytest.approx(2.0, abs=0.3)
    assert measured["tempo_bpm"] == pytest.approx(120, rel=0.04)
    quiet = describe(np.zeros(SR // 2, dtype=np.float32), SR)  # nothing to measure: None, never an error
    assert quiet["tempo_bpm"] is None and quiet["key"] is None and quiet["dynamic_range_db"] is None


def test_words_and_template_captions() -> None:
    loud = {"tempo_bpm": 140.0, "key": "A minor", "loudness_lufs": -9.0, "dynamic_range_db": 4.0,
            "brightness_hz": 3000.0, "onset_rate": 5.0}  # fmt: skip
    assert in_words(loud) == "a fast, bright track in A minor, loud and dense"
    assert in_words({**loud, "key": "Bb major", "brightness_hz": 1500.0}, noun="indie track") == (
        "a fast indie track in B flat major, loud and dense"
    )
    given = CaptionInput("a", "", [], ["One.", "Two.", "Three."], {"descriptors": loud})
    # A source's own sentences (music21, immich) know key and tempo: only texture words are added.
    assert template_caption(given) == ["One.", "Two.", "Three. It is a bright track, loud and dense."]
    # A recording's sentences (the debian source) know neither: the measured key and tempo are said too.
    recording = CaptionInput("r", "", [], ["One.", "Two.", "Three."], {"descriptors": loud}, False)
    assert template_caption(recording)[-1] == "Three. It is a fast, bright track in A minor, loud and dense."
    generic = CaptionInput("b", "", ["pop"], None, {"title": "Hey", "genre": "pop", "descriptors": loud})
    assert template_caption(generic)[0] == '"Hey" is a fast, bright pop track in A minor, loud and dense.'


def test_every_clip_is_measured_and_cached_by_the_decode_workers_and_the_builder_only_reads(
    tmp_path: Path, immich_tracks: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from feature_extraction_music_clip import MusicClipFeatureExtractor

    def not_in_the_builder(*_args, **_kwargs):
        raise AssertionError("measured in the builder's process: a clip's work belongs to its decode worker")

    # The decode workers are other processes (a fork server's): this only stops the builder's own process.
    monkeypatch.setattr(descriptors, "describe", not_in_the_builder)
    monkeypatch.setattr(MusicClipFeatureExtractor, "log_mel", not_in_the_builder)
    music = tmp_path / "music"
    music.mkdir()
    copy_mood_folders(music, immich_tracks, ("calm", "energetic"), 2)
    out = tmp_path / "ds"
    args = ["--audio-dir", str(music), "--output", str(out), "--num-proc", "1", "--captions-fraction", "0.5",
            "--test-size", "0"]  # fmt: skip
    clip_args = ["--clip-seconds", "10", "--max-clips-per-track", "2"]
    assert build_dataset.main(args + clip_args) == 0
    genres = load_dataset(str(out), "genres")["train"].remove_columns(["audio", "mel"])
    captions = load_dataset(str(out), "captions")["train"].remove_columns(["audio", "mel"])
    for rows in (genres, captions):
        assert set(DESCRIPTOR_COLUMNS) <= set(rows.column_names)
        for row in rows:
            assert all(row[name] is not None for name in DESCRIPTOR_COLUMNS), row["track_id"]
            assert row["key"].split()[1] in ("major", "minor") and 40 <= row["tempo_bpm"] <= 240
    clips = [json.loads(m)["clip"] for m in genres["metadata"]]
    assert {c["index"] for c in clips} == {0, 1}  # each clip measured on its own audio
    assert len(set(genres["brightness_hz"])) == len(genres)

    def mel_cache(build_args: list[str]) -> dict[str, int]:
        assert build_dataset.main(build_args) == 0
        return json.loads((out / "build_summary.json").read_text())["mel_cache"]

    # Again: every clip (mel, FLAC, descriptors) comes from the cache, and gives the same rows.
    assert mel_cache(args + clip_args) == {"hits": 4, "computed": 0}
    assert (
        load_dataset(str(out), "genres")["train"].remove_columns(["audio", "mel"]).to_list()
        == genres.to_list()
    )
    # Work made with other clip settings (here the same spans: 0-10 s and 20-30 s), or without clips, is not
    # reused (nor the other way round).
    assert mel_cache(args + clip_args + ["--hop-seconds", "5"]) == {"hits": 0, "computed": 4}
    assert mel_cache(args) == {"hits": 0, "computed": 4}


def test_a_clip_builds_track_descriptors_summarize_its_clips(immich_tracks: list[Path]) -> None:
    """A track cut into clips is measured once, clip by clip: its caption's descriptors are the clips' median
    numbers and most common key, not a second measurement of the whole track."""
    from feature_extraction_music_clip import MusicClipFeatureExtractor
    from music_clip_data.clips import ClipSettings
    from music_clip_data.decode import DecodeSettings, process_file
    from music_clip_data.descriptors import summarize_clips

    result = process_file(immich_tracks[0], MusicClipFeatureExtractor(), DecodeSettings(), ClipSettings(10.0))
    measured = [row["descriptors"] for row in result["rows"]]
    assert [row["span"] for row in result["rows"]] == [(0.0, 10.0), (10.0, 20.0), (20.0, 30.0)]
    assert {k: v for k, v in result["descriptors"].items() if k != "version"} == summarize_clips(measured)
    clips = [
        {"tempo_bpm": 100.0, "key": "A minor", "loudness_lufs": -20.0, "onset_rate": None},
        {"tempo_bpm": 120.0, "key": "C major", "loudness_lufs": None, "onset_rate": None},
        {"tempo_bpm": 90.0, "key": "C major", "loudness_lufs": -10.0, "onset_rate": None},
    ]
    summary = summarize_clips(clips)
    assert (summary["tempo_bpm"], summary["key"], summary["loudness_lufs"]) == (100.0, "C major", -15.0)
    assert summary["onset_rate"] is None and summary["brightness_hz"] is None  # no clip has a value: None


def test_the_llm_gets_tags_and_descriptors_and_fig_13_stays_exact_without_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llm_server import FakeLLMServer

    from music_clip_data.captioning import CaptionSettings, caption_many
    from music_clip_data.prompts import THESIS_PROMPT

    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    facts = {"title": "Hey", "artist": "Ann", "album": "Blue", "date": "2019",
             "descriptors": {"tempo_bpm": 128.0, "key": "A minor", "loudness_lufs": -9.04}}  # fmt: skip
    items = [CaptionInput("tagged", "la la", ["rock"], None, facts), CaptionInput("bare", "lo lo", ["rock"])]
    with FakeLLMServer() as server:
        settings = CaptionSettings(base_url=server.base_url, model="m", cache_dir=tmp_path, progress=False)
        caption_many(items, settings)
        prompts = [r["prompt"] for r in server.requests]
    tagged = next(p for p in prompts if "la la" in p)
    assert (
        "Genre is [rock].\nWhat is known about the recording: title Hey; artist Ann; album Blue; date 2019; "
        "measured on the audio: tempo 128 BPM; key A minor; loudness -9.0 LUFS.\nThe song's lyrics are:"
    ) in tagged
    bare = next(p for p in prompts if "lo lo" in p)
    assert bare == THESIS_PROMPT.format(genre="rock", lyrics="lo lo")
