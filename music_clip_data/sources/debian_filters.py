"""What the debian source leaves out of a package's music files, each with its reason.

- MIDI scores, and audio files rendered from a MIDI file shipped beside them (same stem): the project renders
  scores itself; these are not produced recordings.
- Sound effects and stingers: anything under `MIN_MUSIC_SECONDS` (20 s).
- Near-duplicates (the same piece in two formats, or a re-encoded copy): FFmpeg's `chromaprint` muxer gives a
  raw fingerprint of the first `FINGERPRINT_SECONDS`; two files whose fingerprints agree on at least
  `DUPLICATE_SIMILARITY` of their bits at their best alignment are one piece, and the later one is left out.
- Tracker modules (.mod/.xm/.it/.s3m...): kept. FFmpeg renders them through libopenmpt from the composer's own
  samples and note data, which is the piece as its composer heard it in the tracker (not a General MIDI
  render). The rule: a module is music when libopenmpt reports a length of 20 s to `MAX_MODULE_SECONDS`; a
  longer one loops forever (its loop was not detected) and is left out. docs/real-music-sources.md has the
  measurements behind it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path, PurePosixPath

import numpy as np

MIN_MUSIC_SECONDS = 20.0
MAX_MODULE_SECONDS = 15 * 60.0
FINGERPRINT_SECONDS = 120.0
DUPLICATE_SIMILARITY = 0.85  # share of equal fingerprint bits; unrelated music sits near 0.5
MAX_SHIFT = 8  # fingerprint frames (~0.12 s each) tried either way when aligning two fingerprints
MIN_OVERLAP = 40  # frames two fingerprints must share to be compared (~5 s)
MIDI_EXTENSIONS = frozenset({".mid", ".midi", ".kar"})
TRACKER_EXTENSIONS = frozenset(
    {".mod", ".xm", ".it", ".s3m", ".mptm", ".669", ".med", ".okt", ".stm", ".umx"}
)


def probe_seconds(path: Path) -> float | None:
    """The file's length as FFmpeg reports it (libopenmpt for modules); None when FFmpeg cannot tell."""
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    try:
        return float(result.stdout.strip())
    except ValueError:
        return None


def midi_render_stems(relative_paths: list[str]) -> set[str]:
    """Path stems (folder + name without extension) of the package's MIDI files."""
    return {
        str(PurePosixPath(p).with_suffix("")).lower()
        for p in relative_paths
        if PurePosixPath(p).suffix.lower() in MIDI_EXTENSIONS
    }


def exclusion_reason(relative: str, seconds: float | None, midi_stems: set[str]) -> str | None:
    """Why a music file is left out before fingerprinting, or None to keep it."""
    suffix = PurePosixPath(relative).suffix.lower()
    if suffix in MIDI_EXTENSIONS:
        return "MIDI score (not a recording)"
    if str(PurePosixPath(relative).with_suffix("")).lower() in midi_stems:
        return "rendered from the MIDI file shipped beside it"
    if seconds is None:
        return "unreadable: FFmpeg reports no duration"
    if seconds < MIN_MUSIC_SECONDS:
        return f"sound effect or stinger under {MIN_MUSIC_SECONDS:g} s ({seconds:.1f} s)"
    if suffix in TRACKER_EXTENSIONS and seconds > MAX_MODULE_SECONDS:
        return f"tracker module that loops forever ({seconds / 60:.0f} min reported)"
    return None


def fingerprint(path: Path) -> np.ndarray:
    """Chromaprint's raw fingerprint (uint32 per ~0.12 s) of the first FINGERPRINT_SECONDS, via FFmpeg."""
    result = subprocess.run(
        ["ffmpeg", "-v", "error", "-t", str(FINGERPRINT_SECONDS), "-i", str(path)]
        + ["-f", "chromaprint", "-fp_format", "raw", "-"],
        capture_output=True,
        timeout=300,
    )
    if result.returncode != 0:
        raise RuntimeError(f"ffmpeg chromaprint failed on {path}: {result.stderr.decode(errors='replace')}")
    return np.frombuffer(result.stdout, dtype="<u4").copy()


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Best share of equal bits over alignments within ±MAX_SHIFT frames (0 when they barely overlap)."""
    best = 0.0
    for shift in range(-MAX_SHIFT, MAX_SHIFT + 1):
        x, y = (a[shift:], b) if shift >= 0 else (a, b[-shift:])
        n = min(len(x), len(y))
        if n < MIN_OVERLAP:
            continue
        differing = int(np.bitwise_count(x[:n] ^ y[:n]).sum())
        best = max(best, 1.0 - differing / (32 * n))
    return best


def near_duplicates(prints: dict[str, np.ndarray]) -> dict[str, tuple[str, float]]:
    """id → (the earlier id it duplicates, similarity), comparing each file with every earlier kept one."""
    kept: list[str] = []
    duplicates: dict[str, tuple[str, float]] = {}
    for item, print_ in prints.items():
        match = max(((k, similarity(prints[k], print_)) for k in kept), key=lambda m: m[1], default=None)
        if match and match[1] >= DUPLICATE_SIMILARITY:
            duplicates[item] = match
        else:
            kept.append(item)
    return duplicates
