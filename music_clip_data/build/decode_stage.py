"""Stage 2, decode: every track through the one audio path to a log-mel (cached per file hash), then the kept ones
(decoded, first of each content hash) with their clip spans."""

from __future__ import annotations

import argparse
import multiprocessing
import signal
from collections.abc import Iterator
from concurrent.futures import as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from music_clip_data.clips import clip_spans
from music_clip_data.decode import (
    DecodeSettings,
    decode_status,
    failed_status,
    forget_failure,
    record_failure,
    recorded_failure,
    remove_stale_temps,
    single_thread_worker,
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
    if ctx.args.clips:
        decoded.spans = {t.track_id: clip_spans(s["duration_s"], ctx.args.clips) for t, s in decoded.kept}
    return decoded


def decode_all(
    tracks: list[Track], fe: Any, settings: DecodeSettings, cache_dir: Path, args: argparse.Namespace
) -> list[dict]:
    """Decode + log-mel every track (cached per file hash); one small status dict per track, in order.

    With `--num-proc` 2 or more each file is decoded in a worker process under `--decode-time-limit`. A file
    whose decode kills its worker (a native crash, the OOM killer) or runs past the limit is skipped with that
    reason, the build goes on (Pebble replaces the worker), and the failure is recorded so that later runs skip
    it without paying again, unless `--retry-skipped`. `--num-proc 1` decodes in this process: no time limit.

    Workers come from a fork server, never from a fork of this process: a fork after torch has used its OpenMP
    pool deadlocks in the child (libgomp), which happens whenever the builder runs in a process that computed
    anything with torch (tests, notebooks, the benchmark).
    """
    if cache_dir.is_dir():
        remove_stale_temps(cache_dir)
    results: list[dict | None] = [None] * len(tracks)
    todo: list[int] = []
    for i, track in enumerate(tracks):
        path = str(track.audio_path)
        known = None if args.retry_skipped else recorded_failure(cache_dir, path, settings)
        if known is not None:
            results[i] = failed_status(f"{known} (on an earlier run; --retry-skipped tries it again)")
        else:
            forget_failure(cache_dir, path, settings)
            todo.append(i)
    jobs = {i: (str(tracks[i].audio_path), fe, settings, str(cache_dir)) for i in todo}
    num_proc = max(1, min(args.num_proc, len(todo)))
    bar = tqdm(total=len(tracks), initial=len(tracks) - len(todo), desc=f"decode + log-mel ({num_proc} proc)")
    if num_proc == 1:
        done: Iterator[tuple[int, dict | str]] = ((i, decode_status(*job)) for i, job in jobs.items())
    else:
        done = _decode_in_workers(jobs, num_proc, args.decode_time_limit or None)
    for i, status in done:
        if isinstance(status, str):  # the worker gave up: remembered, so a re-run does not pay again
            record_failure(cache_dir, jobs[i][0], settings, status)
            status = failed_status(status)
        results[i] = status
        bar.update()
    bar.close()
    return results  # type: ignore[return-value]


def _decode_in_workers(
    jobs: dict[int, tuple], num_proc: int, time_limit: float | None
) -> Iterator[tuple[int, dict | str]]:
    """(index, status) as files finish; a string instead of a status is why the worker gave up on the file."""
    from pebble import ProcessExpired, ProcessPool

    context = multiprocessing.get_context("forkserver")
    # The fork server imports these once (no torch op runs there); workers fork from it cheaply.
    # "__main__" too: else every worker re-imports the main script (and all it imports) on start.
    preload = ["__main__", "music_clip_data.decode", "torchcodec.decoders", "torchcodec.encoders"]
    fe = next(iter(jobs.values()))[1]
    context.set_forkserver_preload([*preload, type(fe).__module__])
    pool = ProcessPool(num_proc, context=context, initializer=single_thread_worker)
    try:
        futures = {pool.schedule(decode_status, job, timeout=time_limit): i for i, job in jobs.items()}
        for future in as_completed(futures):
            try:
                yield futures[future], future.result()
            except TimeoutError:
                yield futures[future], f"decode time limit: still running after {time_limit:g} s"
            except ProcessExpired as err:
                why = _exit_reason(err.exitcode)
                yield futures[future], f"decode worker died: {why} (a native crash or out of memory)"
    except BaseException:
        pool.stop()  # Ctrl-C or an error: drop the queued files (closing would decode them all first)
        raise
    else:
        pool.close()  # every file is done: close, then join the idle workers
    finally:
        pool.join()


def _exit_reason(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            pass
    return f"exit code {exitcode}"
