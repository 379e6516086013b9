"""The dataset-card section for the music21 source: classes, sources and licences, rendering, confounds."""

from __future__ import annotations

from typing import Any

from music_clip_data.music21.styles import STYLES

LICENCES = [
    ("music21 corpus (scores)", "music21 package (BSD-3-Clause code). Its README: the music is believed public "
     "domain in the US, EU and Canada; encodings are public domain or used by permission. Palestrina Humdrum "
     "files: (c) 2000 John Miller; Essen folksongs: distributed with music21 by permission of E. Dahlig-Turek "
     "for non-commercial use (`music21/corpus/essenFolksong/license.txt`)."),
    ("FluidR3_GM.sf2", "MIT, Frank Wen (Debian `fluid-soundfont-gm`, `/usr/share/doc/fluid-soundfont-gm/copyright`)"),
    ("TimGM6mb.sf2", "GPL-2, Tim Brechbill (Debian `timgm6mb-soundfont`, "
     "`/usr/share/doc/timgm6mb-soundfont/copyright`)"),
]  # fmt: skip

CONFOUNDS = [
    "Folk classes (fiddle, German, Chinese) are one melodic line; chorales, masses, trecento and quartets are "
    "2-8 voices, so polyphony alone separates some classes.",
    "German and Chinese folk songs come from one encoding project (Essen, abc): the same notation conventions "
    "and no text; only melody separates them.",
    "Tempo is drawn from one range for every clip, so reels are slowed and adagios sped up, but note density "
    "per beat still differs by style.",
    "Pieces shorter than a clip are looped (strophic repetition); this is more frequent for folk tunes.",
    "String quartets come from about 16 works only: the test split holds very few of them.",
    "Bach: the same hymn tune is harmonised under several BWV numbers; groups are BWV numbers, so one tune "
    "may appear on both sides. Fiddle tunes are de-duplicated across collections by title only.",
    "Every note has the same MIDI velocity: written dynamics (quartets only) are not played.",
]


def _ratio_line(summary: dict[str, Any]) -> str:
    """Pretraining (captions) : labelled (genres) audio and pieces; every clip has the same length."""
    hours = {role: summary.get(f"{role}_seconds", 0) / 3600 for role in ("caption", "genre")}
    return (
        f"Captions : genres = {summary.get('captions_per_genre_clip')} : 1 in clips and in audio "
        f"({hours['caption']:.1f} h : {hours['genre']:.1f} h), {summary.get('captions_per_genre_piece')} : 1 "
        f"in pieces ({summary.get('caption_pieces', 0)} : {summary.get('genre_pieces', 0)}): pretraining sees "
        "more music than the few-shot classifier is labelled with, as in the thesis."
    )


def music21_card_section(summary: dict[str, Any], render_facts: dict[str, Any] | None = None) -> str:
    """Markdown for the dataset card from a `Music21Source.summary()`."""
    r = render_facts or {}
    lines = ["## The music21 corpus source", "", "| class | description | corpus sources | genre clips | groups |",
             "|---|---|---|---|---|"]  # fmt: skip
    for name, (desc, sources) in STYLES.items():
        clips = summary.get("genre_clips_per_class", {}).get(name, 0)
        groups = summary.get("genre_groups_per_class", {}).get(name, 0)
        lines.append(f"| {name} | {desc} | {sources} | {clips} | {groups} |")
    lines += [
        "",
        f"Caption clips: {summary.get('caption_clips', 0)} from {summary.get('caption_pieces', 0)} pieces in "
        f"{summary.get('caption_groups', 0)} groups, none shared with the genres config. Pieces that failed: "
        f"{summary.get('failures', 0)} (listed in skipped.jsonl).",
        "",
        _ratio_line(summary),
        "",
        "### How clips were rendered",
        f"Each score is parsed with music21, grace and zero-length notes are dropped, repeats are expanded "
        f"in pieces under 1,000 notes (where it lengthens short tunes; `repeats_expanded` in metadata), "
        f"and the notes are written to MIDI directly (not through music21's exporter). "
        f"Every clip is {r.get('clip_seconds', 15)} s at 16 kHz mono, FLAC, and draws from the same "
        f"distributions whatever its class: a GM program from {r.get('programs', 'one shared pool')} (all "
        f"voices), a SoundFont (FluidR3_GM or TimGM6mb, equally likely), a tempo uniform in "
        f"{r.get('bpm_range', (70, 140))} quarter notes per minute (marked tempi ignored) and a transposition "
        f"uniform in {r.get('transpose_range', (-5, 6))} semitones. FluidSynth renders it; the clip is then "
        "normalised to -23 LUFS (ITU-R BS.1770 via torchaudio, peak-limited to 0.99). Render parameters are in "
        "each row's `metadata`. Captions are template sentences from each piece's metadata and analysis "
        "(`caption_source = template`) unless an LLM endpoint was configured.",
        "",
        "### Sources and licences",
        *[f"- **{name}**: {text}" for name, text in LICENCES],
        "",
        "### Known confounds",
        *[f"- {c}" for c in CONFOUNDS],
    ]
    return "\n".join(lines) + "\n"
