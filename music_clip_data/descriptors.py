"""What a clip's audio does, measured on the one audio path's waveform (16 kHz mono, as the model hears it).

`describe(waveform, sampling_rate)` → the six dataset columns `DESCRIPTOR_COLUMNS`:
- `tempo_bpm`: librosa's tempo estimate (onset-strength autocorrelation with its log-normal prior at 120 BPM);
- `key`: "A minor", "Bb major": the mean CQT chroma of the clip correlated with music21's Krumhansl-Schmuckler
  profiles, the same profiles that give the bundled corpus its key;
- `loudness_lufs`: EBU R128 / ITU-R BS.1770 integrated loudness (pyloudnorm);
- `dynamic_range_db`: the loudness range (EBU Tech 3342 LRA: 10th to 95th percentile of the gated 3-s
  short-term loudness, 1-s hop) in LU = dB;
- `brightness_hz`: the median spectral centroid of the frames within 60 dB of the loudest;
- `onset_rate`: onsets per second (librosa's onset detector on the same onset strength as the tempo).
A value that cannot be measured (a clip too short for a gated loudness, no onsets for a tempo) is None.

The library was chosen by measurement against essentia (`benchmarks/bench_descriptors.py`, results and the
reasons in `docs/results/descriptors.json` and docs/DESIGN.md). `in_words` turns the values into caption words
("a fast, bright track in A minor, loud and dense") with the thresholds of `WORD_THRESHOLDS`, written once here.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import numpy as np

# Column name → `datasets` value type: the builder's rows carry these as top-level columns.
DESCRIPTOR_COLUMNS: dict[str, str] = {
    "tempo_bpm": "float32",
    "key": "string",
    "loudness_lufs": "float32",
    "dynamic_range_db": "float32",
    "brightness_hz": "float32",
    "onset_rate": "float32",
}
# Stored with every cached decode result: a cache entry measured by another version is measured again.
DESCRIPTORS_VERSION = "librosa-0.11-ks-1"
PITCH_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
HOP = 256  # 16 ms at 16 kHz: onset and tempo frames
CHROMA_HOP = 2048
SHORT_TERM_S, SHORT_TERM_HOP_S = 3.0, 1.0  # EBU Tech 3342 short-term loudness for the LRA
LRA_ABSOLUTE_GATE, LRA_RELATIVE_GATE = -70.0, -20.0
CENTROID_FLOOR_DB = -60.0

# Caption words: value below the first threshold → first word, at or above the second → second word, between
# them nothing is said. Chosen so that about a third of real music falls on each side (tempo: the 120 BPM
# prior; loudness: -23 LUFS is broadcast level, -14 streaming level; onsets: one per beat at 90 vs 240 BPM).
WORD_THRESHOLDS: dict[str, tuple[float, str, float, str]] = {
    "tempo_bpm": (85.0, "slow", 125.0, "fast"),
    "brightness_hz": (1000.0, "dark", 2200.0, "bright"),
    "loudness_lufs": (-26.0, "quiet", -14.0, "loud"),
    "onset_rate": (1.5, "sparse", 4.0, "dense"),
    "dynamic_range_db": (3.0, "even", 12.0, "dynamic"),
}


def describe(waveform: np.ndarray, sampling_rate: int) -> dict[str, Any]:
    """The six descriptors of one mono waveform (float, ±1); None for what cannot be measured."""
    import librosa

    wave = np.ascontiguousarray(waveform, dtype=np.float32)
    seconds = wave.size / sampling_rate
    envelope = librosa.onset.onset_strength(y=wave, sr=sampling_rate, hop_length=HOP)
    onsets = librosa.onset.onset_detect(onset_envelope=envelope, sr=sampling_rate, hop_length=HOP)
    tempo = float(librosa.feature.tempo(onset_envelope=envelope, sr=sampling_rate, hop_length=HOP)[0])
    loudness, loudness_range = _loudness(wave, sampling_rate)
    return {
        "tempo_bpm": _rounded(tempo if len(onsets) >= 2 else None, 1),
        "key": _key(wave, sampling_rate),
        "loudness_lufs": _rounded(loudness, 2),
        "dynamic_range_db": _rounded(loudness_range, 2),
        "brightness_hz": _rounded(_brightness(wave, sampling_rate), 1),
        "onset_rate": _rounded(len(onsets) / seconds if seconds > 0 else None, 3),
    }


def describe_flac(flac: bytes) -> dict[str, Any]:
    """`describe` of stored FLAC audio: a clip the builder cut from a track's stored (16 kHz) waveform."""
    import io

    import soundfile as sf

    wave, sr = sf.read(io.BytesIO(flac), dtype="float32")
    return describe(wave, sr)


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None or not np.isfinite(value) else round(float(value), digits)


@lru_cache(maxsize=1)
def _key_profiles() -> np.ndarray:
    """24 × 12 z-scored templates, rows C major .. B major, C minor .. B minor (music21's KS weights)."""
    from music21.analysis.discrete import KrumhanslSchmuckler

    ks = KrumhanslSchmuckler()
    rows = [np.roll(ks.getWeights(mode), tonic) for mode in ("major", "minor") for tonic in range(12)]
    profiles = np.asarray(rows, dtype=np.float64)
    return (profiles - profiles.mean(1, keepdims=True)) / profiles.std(1, keepdims=True)


def _key(wave: np.ndarray, sr: int) -> str | None:
    import librosa

    chroma = librosa.feature.chroma_cqt(y=wave, sr=sr, hop_length=CHROMA_HOP).mean(axis=1)
    if not np.isfinite(chroma).all() or chroma.std() == 0:
        return None
    best = int(np.argmax(_key_profiles() @ ((chroma - chroma.mean()) / chroma.std())))
    return f"{PITCH_NAMES[best % 12]} {'major' if best < 12 else 'minor'}"


def _loudness(wave: np.ndarray, sr: int) -> tuple[float | None, float | None]:
    """Integrated loudness (LUFS) and loudness range (LU) by BS.1770 / Tech 3342 with pyloudnorm's meter."""
    import pyloudnorm

    meter = pyloudnorm.Meter(sr)
    if wave.size < int(meter.block_size * sr):
        return None, None
    integrated = meter.integrated_loudness(wave)
    window, hop = int(SHORT_TERM_S * sr), int(SHORT_TERM_HOP_S * sr)
    if wave.size < window:
        return integrated, None
    short_term = np.array(
        [meter.integrated_loudness(wave[s : s + window]) for s in range(0, wave.size - window + 1, hop)]
    )
    gated = short_term[np.isfinite(short_term) & (short_term > LRA_ABSOLUTE_GATE)]
    if gated.size == 0:
        return integrated, None
    power = 10 ** (gated / 10)
    gated = gated[gated > 10 * np.log10(power.mean()) + LRA_RELATIVE_GATE]
    low, high = np.percentile(gated, [10, 95])
    return integrated, float(high - low)


def _brightness(wave: np.ndarray, sr: int) -> float | None:
    import librosa

    spectrum = np.abs(librosa.stft(wave, hop_length=512))
    energy_db = librosa.power_to_db((spectrum**2).sum(axis=0), ref=np.max)
    centroid = librosa.feature.spectral_centroid(S=spectrum, sr=sr)[0]
    loud = energy_db > CENTROID_FLOOR_DB
    return float(np.median(centroid[loud])) if loud.any() else None


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
    units = {
        "tempo_bpm": ("tempo", "{:.0f} BPM"),
        "key": ("key", "{}"),
        "loudness_lufs": ("loudness", "{:.1f} LUFS"),
        "dynamic_range_db": ("loudness range", "{:.1f} LU"),
        "brightness_hz": ("spectral centroid", "{:.0f} Hz"),
        "onset_rate": ("onsets", "{:.1f} per second"),
    }
    parts = [
        f"{label} {fmt.format(descriptors[k])}"
        for k, (label, fmt) in units.items()
        if descriptors.get(k) is not None
    ]
    return "; ".join(parts)
