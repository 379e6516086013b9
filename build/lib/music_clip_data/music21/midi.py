"""Write Standard MIDI files from flattened notes with music21's low-level MIDI module.

Several clips of one piece (or of several small pieces) go into one file, one after another with a silent
gap, so FluidSynth loads its SoundFont once per batch instead of once per clip.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from music_clip_data.music21.notes import Flattened

TICKS_PER_QUARTER = 960
TICKS_PER_SECOND = TICKS_PER_QUARTER * 2  # no tempo event: MIDI's default 120 bpm, so time is in seconds
VELOCITY = 90  # one velocity for every note: dynamics marks exist in some sources only and would leak them
_CHANNELS = [c for c in range(1, 17) if c != 10]  # music21 numbers channels 1-16; 10 is percussion


@dataclass
class ClipNotes:
    """Notes of one clip in seconds from the clip start, already transposed."""

    on_s: np.ndarray
    off_s: np.ndarray
    pitches: np.ndarray
    voices: np.ndarray


def clip_notes(flat: Flattened, start_ql: float, bpm: float, clip_s: float, transpose: int) -> ClipNotes:
    """The notes sounding in [start, start + clip_s) at `bpm` quarter notes per minute.

    A piece shorter than the window is looped (folk tunes are strophic), so every clip has the same length
    whatever its class.
    """
    window_ql = clip_s * bpm / 60.0
    starts, durs, pitches, voices = flat.starts, flat.durations, flat.pitches, flat.voices
    if flat.length_ql > 0 and flat.length_ql < start_ql + window_ql:
        reps = int(np.ceil((start_ql + window_ql) / flat.length_ql))
        shift = np.repeat(np.arange(reps) * flat.length_ql, len(starts))
        starts = np.tile(starts, reps) + shift
        durs, pitches, voices = np.tile(durs, reps), np.tile(pitches, reps), np.tile(voices, reps)
    ends = starts + durs
    keep = (starts < start_ql + window_ql) & (ends > start_ql)
    sec = 60.0 / bpm
    on = np.clip((starts[keep] - start_ql) * sec, 0.0, clip_s)
    off = np.clip((ends[keep] - start_ql) * sec, 0.0, clip_s)
    pitch = np.clip(pitches[keep].astype(np.int32) + transpose, 0, 127)
    return ClipNotes(on, off, pitch, voices[keep].astype(np.int32))


def write_batch(path: Path, clips: list[tuple[ClipNotes, int]], clip_s: float, gap_s: float) -> None:
    """Write clips (notes, GM program) one after another, clip k starting at k * (clip_s + gap_s) seconds."""
    from music21 import midi

    timed: list[tuple[int, int, midi.MidiEvent]] = []  # (tick, order, event); note-offs sort before note-ons
    track = midi.MidiTrack(0)

    def event(tick: int, order: int, kind: int, channel: int, p1: int, p2: int | None = None) -> None:
        ev = midi.MidiEvent(track, type=kind, channel=channel)
        ev.parameter1 = p1
        ev.parameter2 = p2
        timed.append((tick, order, ev))

    for k, (notes, program) in enumerate(clips):
        t0 = round(k * (clip_s + gap_s) * TICKS_PER_SECOND)
        t_end = t0 + round(clip_s * TICKS_PER_SECOND)
        used = sorted({_CHANNELS[v % len(_CHANNELS)] for v in notes.voices.tolist()}) or [1]
        for ch in used:
            event(t0, 0, midi.ChannelVoiceMessages.PROGRAM_CHANGE, ch, program)
        for on, off, pitch, voice in zip(notes.on_s, notes.off_s, notes.pitches, notes.voices, strict=True):
            a, b = t0 + round(on * TICKS_PER_SECOND), t0 + round(off * TICKS_PER_SECOND)
            if b <= a:
                continue
            ch = _CHANNELS[int(voice) % len(_CHANNELS)]
            event(a, 2, midi.ChannelVoiceMessages.NOTE_ON, ch, int(pitch), VELOCITY)
            event(b, 1, midi.ChannelVoiceMessages.NOTE_OFF, ch, int(pitch), 0)
        for ch in used:  # silence everything before the gap, whatever the SoundFont's release times
            event(t_end, 3, midi.ChannelVoiceMessages.CONTROLLER_CHANGE, ch, 120, 0)
    timed.sort(key=lambda x: (x[0], x[1]))
    end_tick = round(len(clips) * (clip_s + gap_s) * TICKS_PER_SECOND)
    events: list[midi.MidiEvent] = []
    last = 0
    for tick, _, ev in timed:
        events += [midi.DeltaTime(track, time=tick - last), ev]
        last = tick
    eot = midi.MidiEvent(track, type=midi.MetaEvents.END_OF_TRACK)
    eot.data = b""
    events += [midi.DeltaTime(track, time=max(0, end_tick - last)), eot]
    track.events = events
    mf = midi.MidiFile()
    mf.ticksPerQuarterNote = TICKS_PER_QUARTER
    mf.tracks.append(track)
    Path(path).write_bytes(mf.writestr())
