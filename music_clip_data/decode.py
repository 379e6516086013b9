"""Audio file → the one audio path (`audio_music_clip`) → the feature extractor's log-mel, cached per file hash.

Rules for clips the model cannot learn from (stated in the dataset card; the same rules as the processor's and
the Space's, from `audio_music_clip`):
- shorter than `min_seconds` (default 1 s, e.g. a 0.1 s clip): skipped, "too short";
- peak below `silence_dbfs` (default −60 dBFS, e.g. digital silence): skipped, "silent";
- non-finite samples: skipped, "non finite";
- longer than `max_seconds` (default 600 s): only the first `max_seconds` are kept (noted in `metadata`);
- channels are averaged, soxr resamples, and samples beyond ±1 (lossy decoders overshoot) are clipped to ±1
  before the mel and the FLAC.
Anything FFmpeg cannot decode (corrupt, empty, truncated past its header, not audio) is skipped with FFmpeg's
reason. A file whose extension lies but whose content decodes (an Ogg named `.mp3`) is kept: FFmpeg probes it.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from audio_music_clip import (
    AUDIO_PATH_VERSION,
    MAX_SECONDS,
    MIN_SECONDS,
    SILENCE_DBFS,
    AudioRejected,
    check_waveform,
    load_audio,
)
from music_clip_common.files import atomic_path
from music_clip_common.hashing import file_sha256
from music_clip_data.descriptors import DESCRIPTORS_VERSION, describe


class SkipClip(Exception):
    """A file the builder skips; the message is the reason written to skipped.jsonl."""


@dataclass(frozen=True)
class DecodeSettings:
    min_seconds: float = MIN_SECONDS
    max_seconds: float | None = MAX_SECONDS
    silence_dbfs: float = SILENCE_DBFS


# skipped.jsonl's reason kinds: the rule's slug, with the builder's older name for undecodable files.
_REASON_KINDS = {"unreadable": "cannot decode"}


def cache_key(file_hash: str, fe: Any, settings: DecodeSettings) -> str:
    """Same file, same extractor config, same rules, same audio path → same cached mel."""
    fe_config = fe.to_json_string() if hasattr(fe, "to_json_string") else repr(fe)
    payload = json.dumps([file_hash, fe_config, asdict(settings), AUDIO_PATH_VERSION], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def decode_for_model(path: Path, fe: Any, settings: DecodeSettings) -> tuple[np.ndarray, dict]:
    """The one audio path (`audio_music_clip.load_audio`, as the processor and the Space use it) and the
    acceptance rules with the build's settings. Raises `SkipClip` with the rule's reason."""
    sr = int(fe.sampling_rate)
    try:
        loaded = load_audio(path, target_rate=sr, max_seconds=settings.max_seconds, check=False)
        check_waveform(
            loaded.waveform, sr, min_seconds=settings.min_seconds, silence_dbfs=settings.silence_dbfs
        )
    except AudioRejected as err:
        raise SkipClip(
            f"{_REASON_KINDS.get(err.reason, err.reason.replace('_', ' '))}: {err}"[:400]
        ) from None
    return loaded.waveform, loaded.info


def encode_flac(waveform: np.ndarray, sampling_rate: int) -> bytes:
    import torch
    from torchcodec.encoders import AudioEncoder

    clipped = np.clip(waveform, -1.0, 1.0)[None, :]
    return (
        AudioEncoder(torch.from_numpy(clipped), sample_rate=sampling_rate).to_tensor("flac").numpy().tobytes()
    )


def process_file(path: Path, fe: Any, settings: DecodeSettings) -> dict:
    """Decode, check the rules, log-mel and FLAC-encode one file. Raises `SkipClip` with the reason."""
    if not path.is_file():
        raise SkipClip("file not found")
    if path.stat().st_size == 0:
        raise SkipClip("empty file (0 bytes)")
    sr = int(fe.sampling_rate)
    wave, info = decode_for_model(path, fe, settings)
    seconds = wave.size / sr
    mel = fe.log_mel(wave).astype(np.float32, copy=False)
    result = {"mel": mel, "flac": encode_flac(wave, sr), "duration_s": round(seconds, 3), "decode_info": info}
    # Measured here, on the waveform the mel is made of, so they are cached with it (no second decode).
    return {**result, "descriptors": {**describe(wave, sr), "version": DESCRIPTORS_VERSION}}


def process_cached(path: Path, fe: Any, settings: DecodeSettings, cache_dir: Path | None) -> dict:
    """`process_file` with a per-file cache keyed by content hash: a re-run reuses finished work."""
    file_hash = file_sha256(path) if path.is_file() else ""
    cached = cache_dir / f"{cache_key(file_hash, fe, settings)}.npz" if cache_dir and file_hash else None
    if cached is not None and cached.is_file():
        entry = _read_cache_entry(cached)
        if entry is not None:
            return {**entry, "file_hash": file_hash, "from_cache": True, "cache_file": str(cached)}
        cached.unlink(missing_ok=True)  # cut, emptied or garbled (disk full, a copy, a crash): compute again
    result = process_file(path, fe, settings)
    if cached is not None:
        _write_cache_entry(cached, result)
    return {
        **result,
        "file_hash": file_hash,
        "from_cache": False,
        "cache_file": str(cached) if cached else "",
    }


def _read_cache_entry(cached: Path) -> dict | None:
    """The stored result, or None for any entry that is not a complete, valid one.

    Anything unreadable counts (a 0-byte file raises `EOFError`, a cut one `BadZipFile`, a garbled one
    `ValueError`...): the entry is only a cache, so it is recomputed, never trusted and never a reason to skip.
    """
    try:
        with np.load(cached, allow_pickle=False) as data:
            entry = {
                "mel": data["mel"],
                "flac": data["flac"].tobytes(),
                "duration_s": float(data["duration_s"]),
                "decode_info": json.loads(str(data["decode_info"])),
                "descriptors": json.loads(str(data["descriptors"])),
            }
    except Exception:  # noqa: BLE001 - see the docstring: every failure means "compute again"
        return None
    mel = entry["mel"]
    if mel.ndim != 2 or mel.shape[0] == 0 or mel.dtype != np.float32 or not entry["flac"]:
        return None
    if entry["descriptors"].get("version") != DESCRIPTORS_VERSION:  # measured by another version: again
        return None
    return entry


def _write_cache_entry(cached: Path, result: dict) -> None:
    """Atomic (`atomic_path`): a killed build never leaves a half-written entry, and two processes writing the
    same entry never share a temp file."""
    cached.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(cached, suffix=".npz") as tmp:
        np.savez(
            tmp,
            mel=result["mel"],
            flac=np.frombuffer(result["flac"], dtype=np.uint8),
            duration_s=result["duration_s"],
            decode_info=json.dumps(result["decode_info"]),
            descriptors=json.dumps(result["descriptors"]),
        )


def remove_stale_temps(cache_dir: Path, older_than_s: float = 3600.0) -> int:
    """Delete cache temp files left by killed builds. Only old ones: another builder sharing `--cache-dir`
    may be writing a fresh one (a write takes milliseconds, so an hour-old temp file is abandoned). Both our
    names (`.KEY.npz.TOKEN.tmp.npz`, from `atomic_path`), and older builders' (`KEY.tmpN.npz`)."""
    cutoff = time.time() - older_than_s
    removed = 0
    for path in cache_dir.glob("*.tmp*.npz"):
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except FileNotFoundError:  # its writer renamed it, or another builder removed it
            pass
    return removed


def load_cached(cache_file: str) -> tuple[np.ndarray, bytes]:
    """The mel and FLAC bytes `process_cached` stored."""
    with np.load(cache_file, allow_pickle=False) as data:
        return data["mel"], data["flac"].tobytes()


def failed_status(reason: str) -> dict:
    """The status of a file that gives no row, with the reason for skipped.jsonl."""
    status = {"ok": False, "reason": reason, "cache_file": "", "file_hash": "", "mel_length": 0}
    return {**status, "duration_s": 0.0, "from_cache": False, "decode_info": "{}", "descriptors": {}}


def decode_status(path: str, fe: Any, settings: DecodeSettings, cache_dir: str) -> dict:
    """`process_cached` as a small, picklable status (the mel stays in the cache): never raises for one file."""
    try:
        result = process_cached(Path(path), fe, settings, Path(cache_dir))
    except SkipClip as err:
        return failed_status(str(err))
    except Exception as err:  # never crash the build on one file: report it
        return failed_status(f"unexpected error: {type(err).__name__}: {err}"[:300])
    return {
        "ok": True,
        "reason": "",
        "cache_file": result["cache_file"],
        "file_hash": result["file_hash"],
        "mel_length": int(result["mel"].shape[0]),
        "duration_s": float(result["duration_s"]),
        "from_cache": bool(result["from_cache"]),
        "decode_info": json.dumps(result["decode_info"]),
        "descriptors": {k: v for k, v in result["descriptors"].items() if k != "version"},
    }


def single_thread_worker() -> None:
    """Pool initializer: one torch thread per worker process, so N workers use N cores, not N x N threads."""
    import torch

    torch.set_num_threads(1)
