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
import io
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

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
from music_clip_data.clips import ClipSettings, clip_spans, span_samples
from music_clip_data.descriptors import DESCRIPTORS_VERSION, describe, summarize_clips


class SkipClip(Exception):
    """A file the builder skips; the message is the reason written to skipped.jsonl."""


@dataclass(frozen=True)
class DecodeSettings:
    min_seconds: float = MIN_SECONDS
    max_seconds: float | None = MAX_SECONDS
    silence_dbfs: float = SILENCE_DBFS


# skipped.jsonl's reason kinds: the rule's slug, with the builder's older name for undecodable files.
_REASON_KINDS = {"unreadable": "cannot decode"}


def work_rules(settings: DecodeSettings, clips: ClipSettings | None) -> dict:
    """What a file's cached work depends on besides the file and the extractor: the rules, and the clip settings
    of a build that cuts clips (a build without clips keeps the keys it always had)."""
    return {**asdict(settings), "clips": asdict(clips)} if clips else asdict(settings)


def cache_key(file_hash: str, fe: Any, settings: DecodeSettings, clips: ClipSettings | None = None) -> str:
    """Same file, same extractor config, same rules, same clips, same audio path → same cached work."""
    fe_config = fe.to_json_string() if hasattr(fe, "to_json_string") else repr(fe)
    payload = json.dumps(
        [file_hash, fe_config, work_rules(settings, clips), AUDIO_PATH_VERSION], sort_keys=True
    )
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


def process_file(path: Path, fe: Any, settings: DecodeSettings, clips: ClipSettings | None = None) -> dict:
    """Decode and check the rules, then each row's work on the decoded waveform: the whole track's log-mel, FLAC
    and descriptors, or, when the build cuts `clips`, each clip's. Raises `SkipClip` with the reason."""
    if not path.is_file():
        raise SkipClip("file not found")
    if path.stat().st_size == 0:
        raise SkipClip("empty file (0 bytes)")
    sr = int(fe.sampling_rate)
    wave, info = decode_for_model(path, fe, settings)
    duration_s = round(wave.size / sr, 3)
    if clips is None:
        # Measured here, on the waveform the mel is made of, so they are cached with it (no second decode).
        descriptors = describe(wave, sr)
        mel = fe.log_mel(wave).astype(np.float32, copy=False)
        rows = [{"mel": mel, "flac": encode_flac(wave, sr), "descriptors": descriptors, "span": None}]
    else:
        rows = [clip_row(wave, sr, fe, span) for span in clip_spans(duration_s, clips)]
        descriptors = summarize_clips([row["descriptors"] for row in rows])  # the track's, for its caption
    return {
        "duration_s": duration_s,
        "decode_info": info,
        "clips": asdict(clips) if clips else None,
        "rows": rows,
        "descriptors": {**descriptors, "version": DESCRIPTORS_VERSION},
    }


def clip_row(wave: np.ndarray, sampling_rate: int, fe: Any, span: tuple[float, float]) -> dict:
    """One clip's FLAC, and its log-mel and descriptors of exactly the samples that FLAC stores: a row's `mel`
    is always the feature extractor applied to its `audio`."""
    flac = encode_flac(wave[span_samples(span, sampling_rate)], sampling_rate)
    stored, _ = sf.read(io.BytesIO(flac), dtype="float32")
    mel = fe.log_mel(stored).astype(np.float32, copy=False)
    return {"mel": mel, "flac": flac, "descriptors": describe(stored, sampling_rate), "span": span}


def process_cached(
    path: Path, fe: Any, settings: DecodeSettings, cache_dir: Path | None, clips: ClipSettings | None = None
) -> dict:
    """`process_file` with a per-file cache keyed by content hash (and the clip settings): a re-run reuses
    finished work, every clip's included."""
    file_hash = file_sha256(path) if path.is_file() else ""
    cached = (
        cache_dir / f"{cache_key(file_hash, fe, settings, clips)}.npz" if cache_dir and file_hash else None
    )
    if cached is not None and cached.is_file():
        entry = _read_cache_entry(cached)
        if entry is not None and entry["clips"] == (asdict(clips) if clips else None):
            return {**entry, "file_hash": file_hash, "from_cache": True, "cache_file": str(cached)}
        cached.unlink(missing_ok=True)  # cut, emptied or garbled (disk full, a copy, a crash): compute again
    result = process_file(path, fe, settings, clips)
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
                "duration_s": float(data["duration_s"]),
                "decode_info": json.loads(str(data["decode_info"])),
                "descriptors": json.loads(str(data["descriptors"])),
                "clips": json.loads(str(data["clips"]))["settings"] if "clips" in data.files else None,
            }
            entry["rows"] = _stored_rows(data, entry["descriptors"])
    except Exception:  # noqa: BLE001 - see the docstring: every failure means "compute again"
        return None
    if not entry["rows"] or not all(_valid_row(row) for row in entry["rows"]):
        return None
    if entry["descriptors"].get("version") != DESCRIPTORS_VERSION:  # measured by another version: again
        return None
    return entry


def _stored_rows(data: Any, descriptors: dict) -> list[dict]:
    """An entry's rows: one per clip (its mel, FLAC, descriptors and span) when the build cut clips, else the
    whole track's (the entry's own descriptors)."""
    if "clips" not in data.files:
        whole = {k: v for k, v in descriptors.items() if k != "version"}
        return [{"mel": data["mel"], "flac": data["flac"].tobytes(), "descriptors": whole, "span": None}]
    clips = json.loads(str(data["clips"]))
    return [
        {"mel": data[f"clip_mel_{i}"], "flac": data[f"clip_flac_{i}"].tobytes(), "descriptors": measured,
         "span": tuple(span)}
        for i, (span, measured) in enumerate(zip(clips["spans"], clips["descriptors"], strict=True))
    ]  # fmt: skip


def _valid_row(row: dict) -> bool:
    mel = row["mel"]
    return mel.ndim == 2 and mel.shape[0] > 0 and mel.dtype == np.float32 and bool(row["flac"])


def _write_cache_entry(cached: Path, result: dict) -> None:
    """Atomic (`atomic_path`): a killed build never leaves a half-written entry, and two processes writing the
    same entry never share a temp file. A whole track's entry keeps the layout it always had."""
    rows = result["rows"]
    arrays: dict[str, Any] = {
        "duration_s": result["duration_s"],
        "decode_info": json.dumps(result["decode_info"]),
        "descriptors": json.dumps(result["descriptors"]),
    }
    if result["clips"] is None:
        arrays.update(mel=rows[0]["mel"], flac=np.frombuffer(rows[0]["flac"], dtype=np.uint8))
    else:
        spans, measured = [row["span"] for row in rows], [row["descriptors"] for row in rows]
        arrays["clips"] = json.dumps({"settings": result["clips"], "spans": spans, "descriptors": measured})
        for i, row in enumerate(rows):
            arrays[f"clip_mel_{i}"] = row["mel"]
            arrays[f"clip_flac_{i}"] = np.frombuffer(row["flac"], dtype=np.uint8)
    cached.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(cached, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)


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


def load_rows(cache_file: str) -> list[dict]:
    """The rows' work `process_cached` stored (mel, FLAC bytes, descriptors, clip span or None), in order."""
    entry = _read_cache_entry(Path(cache_file))
    if entry is None:
        raise ValueError(
            f"cached decode {cache_file} is gone or unreadable since decoding: run the build again"
        )
    return entry["rows"]


def failed_status(reason: str) -> dict:
    """The status of a file that gives no row, with the reason for skipped.jsonl."""
    status = {"ok": False, "reason": reason, "cache_file": "", "file_hash": "", "spans": None}
    return {**status, "duration_s": 0.0, "from_cache": False, "decode_info": "{}", "descriptors": {}}


def decode_status(
    path: str, fe: Any, settings: DecodeSettings, clips: ClipSettings | None, cache_dir: str
) -> dict:
    """`process_cached` as a small, picklable status (the rows' work stays in the cache): never raises for one
    file. `spans`: the clips' (start, end) seconds, None for a whole track."""
    try:
        result = process_cached(Path(path), fe, settings, Path(cache_dir), clips)
    except SkipClip as err:
        return failed_status(str(err))
    except Exception as err:  # never crash the build on one file: report it
        return failed_status(f"unexpected error: {type(err).__name__}: {err}"[:300])
    return {
        "ok": True,
        "reason": "",
        "cache_file": result["cache_file"],
        "file_hash": result["file_hash"],
        "spans": [row["span"] for row in result["rows"]] if clips else None,
        "duration_s": float(result["duration_s"]),
        "from_cache": bool(result["from_cache"]),
        "decode_info": json.dumps(result["decode_info"]),
        "descriptors": {k: v for k, v in result["descriptors"].items() if k != "version"},
    }


def single_thread_worker() -> None:
    """Pool initializer: one torch thread per worker process, so N workers use N cores, not N x N threads."""
    import torch

    torch.set_num_threads(1)
