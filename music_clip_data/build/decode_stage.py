"""Stage 2, decode: every track through the one audio path to its rows' log-mel, FLAC and descriptors (each clip's
when the build cuts clips; cached per file hash), then the kept ones (decoded, first of each content hash) with
their clip spans."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from music_clip_common.workers import record_failure, run_in_workers, split_known_failures
from music_clip_data.decode import (
    DecodeSettings,
    decode_status,
    failed_status,
    remove_stale_temps,
    single_thread_worker,
    work_rules,
)
from music_clip_data.track import Track

from .context import BuildContext


@dataclass
class Decoded:
    """The kept tracks (decode status each) in source order, clip spans by track id when cutting clips."""

    kept: list[tuple[Track, dict]]
    skipped: list[dict] = field(default_factory=list)
    spans: dict[str, list[tuple[float, float]]] = field(default_factory=dict)

    def n_rows(self, track: Track) -> int:
        return len(self.spans[track.track_id]) if self.spans else 1


def decode(ctx: BuildContext, tracks: list[Track]) -> list[dict]:
    """Stage 2: one decode status per track, in order."""
    return decode_all(tracks, ctx.fe, ctx.settings, ctx.cache / "mels", ctx.args) if tracks else []


def keep_decoded(ctx: BuildContext, tracks: list[Track], statuses: list[dict]) -> Decoded:
    """The decoded tracks, first of each content hash (later copies and failures are skipped with a reason)."""
    decoded = Decoded([])
    seen_hash: dict[str, str] = {}
    for track, status in zip(tracks, statuses, strict=True):
        entry = {"track_id": track.track_id, "path": str(track.audio_path)}
        if not status["ok"]:
            decoded.skipped.append({**entry, "reason": status["reason"]})
        elif status["file_hash"] in seen_hash:
            decoded.skipped.append(
                {**entry, "reason": f"duplicate audio (same content as {seen_hash[status['file_hash']]})"}
            )
        else:
            seen_hash[status["file_hash"]] = track.track_id
            decoded.kept.append((track, status))
    if ctx.args.clips:  # cut by the decode worker (a shard's record holds them as JSON lists)
        decoded.spans = {t.track_id: [tuple(span) for span in s["spans"]] for t, s in decoded.kept}
    return decoded


def decode_all(
    tracks: list[Track], fe: Any, settings: DecodeSettings, cache_dir: Path, args: argparse.Namespace
) -> list[dict]:
    """Decode every track and do its rows' work (log-mel, FLAC, descriptors; each clip's with `--clip-seconds`),
    cached per file hash; one small status dict per track, in order.

    Under the one worker policy (`music_clip_common.workers`, with `--num-proc` 1 too): each file is decoded in
    a worker process under `--decode-time-limit`; a file whose decode kills its worker or runs past the limit
    is skipped with that reason, the build goes on, and the failure is recorded so that later runs skip it
    without paying again, unless `--retry-skipped`.
    """
    if cache_dir.is_dir():
        remove_stale_temps(cache_dir)
    paths = {i: str(track.audio_path) for i, track in enumerate(tracks)}
    clips = args.clips
    rules = work_rules(settings, clips)
    todo, known = split_known_failures(paths, cache_dir, rules, args.retry_skipped)
    results: list[dict | None] = [None] * len(tracks)
    for i, reason in known.items():
        results[i] = failed_status(reason)
    jobs = {i: (paths[i], fe, settings, clips, str(cache_dir)) for i in todo}
    num_proc = max(1, min(args.num_proc, len(todo)))
    bar = tqdm(total=len(tracks), initial=len(tracks) - len(todo), desc=f"decode + log-mel ({num_proc} proc)")
    preload = (
        "music_clip_data.decode",
        "music_clip_data.descriptors_warm",
        "torchcodec.encoders",
        type(fe).__module__,
    )
    limit = args.decode_time_limit or None
    for i, status in run_in_workers(decode_status, jobs, num_proc, limit, single_thread_worker, (), preload):
        if isinstance(status, str):  # the worker gave up: remembered, so a re-run does not pay again
            record_failure(cache_dir, paths[i], rules, status)
            status = failed_status(status)
        results[i] = status
        bar.update()
    bar.close()
    return results  # type: ignore[return-value]
