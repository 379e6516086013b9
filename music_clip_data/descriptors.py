"""What a clip's audio does, measured on the one audio path's waveform (16 kHz mono, as the model hears it).

`describe(waveform, sampling_rate)` → the six dataset columns `DESCRIPTOR_COLUMNS`:
- `tempo_bpm`: essentia's `PercivalBpmEstimator` (Percival & Tzanetakis 2014);
- `key`: "A minor", "Bb major": essentia's `KeyExtractor` (HPCP chroma against the `bgate` profile);
- `loudness_lufs` and `dynamic_range_db`: essentia's `LoudnessEBUR128`: integrated loudness (EBU R128 /
  ITU-R BS.1770, LUFS) and loudness range (EBU Tech 3342 LRA, LU = dB), the mono clip as one channel;
- `brightness_hz`: librosa's spectral centroid, the median over the frames within 60 dB of the loudest;
- `onset_rate`: onsets per second from librosa's onset detector.
A value that cannot be measured (silence, a clip too short for a gated loudness) is None, never an error.

The libraries were chosen by measurement (`benchmarks/bench_descriptors.py`, `docs/results/descriptors.json`):
on the generated tracks with known tempo, essentia's tempo is right within 4 % on 93 % of tracks where
librosa's is on 43 %, at twice the speed; its key is as good and ten times faster. Essentia is AGPL-3.0.
`in_words` turns the values into caption words ("a fast, bright track in A minor, loud and dense") with the
thresholds of `WORD_THRESHOLDS`, written once here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Descriptor:
    """One measured column: its `datasets` value type, and how an LLM prompt names it and writes its value."""

    dtype: str
    label: str
    value_format: str


# The builder's rows carry these as top-level columns; prompts list them in this order (`as_facts`).
DESCRIPTORS: dict[str, Descriptor] = {
    "tempo_bpm": Descriptor("float32", "tempo", "{:.0f} BPM"),
    "key": Descriptor("string", "key", "{}"),
    "loudness_lufs": Descriptor("float32", "loudness", "{:.1f} LUFS"),
    "dynamic_range_db": Descriptor("float32", "loudness range", "{:.1f} LU"),
    "brightness_hz": Descriptor("float32", "spectral centroid", "{:.0f} Hz"),
    "onset_rate": Descriptor("float32", "onsets", "{:.1f} per second"),
}
DESCRIPTOR_COLUMNS: dict[str, str] = {name: d.dtype for name, d in DESCRIPTORS.items()}  # → `datasets` type
# Stored with every cached decode result: a cache entry measured by another version is measured again.
DESCRIPTORS_VERSION = "essentia-2.1b6+librosa-0.11/2"  # words are not cached: not in it
KEY_PROFILE = "bgate"
ONSET_HOP = 256  # 16 ms at 16 kHz
CENTROID_FLOOR_DB = -60.0
MIN_SECONDS = 0.4  # one BS.1770 gating block; shorter clips get no descriptor
SHORT_TERM_S = 3.0  # EBU Tech 3342 short-term window: a shorter clip has no loudness range

# Caption words: value below the first threshold → first word, at or above the second → second word, between
# them nothing is said. Set by judgment, then checked on the immich tracks and the music21 renders so that
# each word goes to a minority of clips (tempo: around the common 120 BPM; loudness: -26 LUFS is quieter than
# broadcast level, -14 LUFS is streaming level; loudness range: 15-30 s clips mostly have 1-3 LU; onsets:
# under one per beat of a slow piece vs two per beat of a lively one).
WORD_THRESHOLDS: dict[str, tuple[float, str, float, str]] = {
    "tempo_bpm": (85.0, "slow", 125.0, "fast"),
    "brightness_hz": (1000.0, "dark", 2200.0, "bright"),
    "loudness_lufs": (-26.0, "quiet", -14.0, "loud"),
    "dynamic_range_db": (1.5, "even", 6.0, "dynamic"),
    "onset_rate": (1.5, "sparse", 4.0, "dense"),
}


def describe(waveform: np.ndarray, sampling_rate: int) -> dict[str, Any]:
    """The six descriptors of one mono waveform (float, ±1); None for what cannot be measured."""
    wave = np.ascontiguousarray(waveform, dtype=np.float32)
    values: dict[str, Any] = dict.fromkeys(DESCRIPTOR_COLUMNS)
    if wave.size < MIN_SECONDS * sampling_rate or not np.any(wave):
        return values
    for measure in MEASURES.values():
        try:
            values.update(measure(wave, sampling_rate))
        except RuntimeError:  # essentia's way of saying "nothing to measure" (e.g. silence after the start)
            continue
    return {k: _finite(v) for k, v in values.items()}


def warm_up(sampling_rate: int = 16000) -> None:
    """Import essentia and librosa and JIT-compile librosa's numba kernels (about 8 s the first time in a
    process) on a short noise clip. Decode workers' fork server calls it once (`descriptors_warm`), so no
    worker pays it inside a file's decode time limit."""
    noise = np.random.default_rng(0).standard_normal(int(MIN_SECONDS * sampling_rate) + sampling_rate)
    describe((0.1 * noise).astype(np.float32), sampling_rate)


def summarize_clips(clips: list[Mapping[str, Any]]) -> dict[str, Any]:
    """A track's descriptors from its clips' (a build that cuts clips measures each clip, not the whole track
    again): the median of each number, the most common key (the earliest clip's among equals); None where no
    clip has a value."""
    values: dict[str, Any] = dict.fromkeys(DESCRIPTOR_COLUMNS)
    for name, kind in DESCRIPTOR_COLUMNS.items():
        measured = [clip[name] for clip in clips if clip.get(name) is not None]
        if measured:
            values[name] = (
                Counter(measured).most_common(1)[0][0] if kind == "string" else _finite(np.median(measured))
            )
    return values


def _finite(value: Any) -> Any:
    if isinstance(value, str) or value is None:
        return value
    return round(float(value), 3) if np.isfinite(value) else None


def _essentia() -> Any:
    import essentia
    import essentia.standard as es

    essentia.log.infoActive = False  # one INFO line per algorithm instance otherwise
    return es


def _tempo(wave: np.ndarray, sr: int) -> dict[str, Any]:
    bpm = float(_essentia().PercivalBpmEstimator(sampleRate=sr)(wave))
    return {"tempo_bpm": bpm if bpm > 0 else None}


def _key(wave: np.ndarray, sr: int) -> dict[str, Any]:
    tonic, mode, strength = _essentia().KeyExtractor(sampleRate=sr, profileType=KEY_PROFILE)(wave)
    return {"key": f"{tonic} {mode}" if strength > 0 else None}


def _loudness(wave: np.ndarray, sr: int) -> dict[str, Any]:
    # BS.1770 weighs a mono signal as one channel: as a stereo pair with a silent right channel, not a copy
    # (a copy would read 3 dB louder).
    stereo = np.stack([wave, np.zeros_like(wave)], axis=1)
    _, _, integrated, loudness_range = _essentia().LoudnessEBUR128(sampleRate=sr)(stereo)
    measurable = integrated > -70 and wave.size >= SHORT_TERM_S * sr  # LRA needs 3-s short-term windows
    return {"loudness_lufs": integrated, "dynamic_range_db": loudness_range if measurable else None}


def _onset_rate(wave: np.ndarray, sr: int) -> dict[str, Any]:
    import librosa

    onsets = librosa.onset.onset_detect(y=wave, sr=sr, hop_length=ONSET_HOP)
    return {"onset_rate": len(onsets) / (wave.size / sr)}


def _brightness(wave: np.ndarray, sr: int) -> dict[str, Any]:
    import librosa

    spectrum = np.abs(librosa.stft(wave, hop_length=512))
    energy_db = librosa.power_to_db((spectrum**2).sum(axis=0), ref=np.max)
    centroid = librosa.feature.spectral_centroid(S=spectrum, sr=sr)[0]
    loud = energy_db > CENTROID_FLOOR_DB
    return {"brightness_hz": float(np.median(centroid[loud])) if loud.any() else None}


# Each measure gives some of the columns; the benchmark times them one by one.
MEASURES: dict[str, Callable[[np.ndarray, int], dict[str, Any]]] = {
    "tempo": _tempo,
    "key": _key,
    "loudness+range": _loudness,
    "onsets": _onset_rate,
    "brightness": _brightness,
}


def key_words(key: str) -> str:
    """ "Bb minor" → "B flat minor", "F# major" → "F sharp major" (how a caption says it)."""
    tonic, _, mode = key.partition(" ")
    spoken = tonic[0] + {"b": " flat", "#": " sharp"}.get(tonic[1:], tonic[1:])
    return f"{spoken} {mode}".strip()


def _word(name: str, value: float | None) -> str | None:
    if value is None:
        return None
    low, low_word, high, high_word = WORD_THRESHOLDS[name]
    return low_word if value < low else high_word if value >= high else None


def in_words(descriptors: Mapping[str, Any], with_key_and_tempo: bool = True, noun: str = "track") -> str:
    """ "a fast, bright track in A minor, loud and dense" from the descriptors (thresholds: `WORD_THRESHOLDS`);
    "" when nothing stands out. `with_key_and_tempo=False` leaves key and tempo to a source that knows them."""
    pace = _word("tempo_bpm", descriptors.get("tempo_bpm")) if with_key_and_tempo else None
    colour = _word("brightness_hz", descriptors.get("brightness_hz"))
    texture = [
        w
        for w in (
            _word("loudness_lufs", descriptors.get("loudness_lufs")),
            _word("dynamic_range_db", descriptors.get("dynamic_range_db")),
            _word("onset_rate", descriptors.get("onset_rate")),
        )
        if w
    ]
    key = descriptors.get("key") if with_key_and_tempo else None
    if not (pace or colour or texture or key):
        return ""
    adjectives = ", ".join(w for w in (pace, colour) if w)
    head = f"{adjectives} {noun}" if adjectives else noun
    phrase = f"{'an' if head[:1].lower() in 'aeiou' else 'a'} {head}" + (
        f" in {key_words(key)}" if key else ""
    )
    if texture:
        phrase += ", " + (
            " and ".join(texture) if len(texture) < 3 else f"{texture[0]}, {texture[1]} and {texture[2]}"
        )
    return phrase


def as_facts(descriptors: Mapping[str, Any]) -> str:
    """The measured values as one line for an LLM prompt ("" when none was measured)."""
    parts = [
        f"{d.label} {d.value_format.format(descriptors[name])}"
        for name, d in DESCRIPTORS.items()
        if descriptors.get(name) is not None
    ]
    return "; ".join(parts)
