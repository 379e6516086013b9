"""The one decode-and-embed worker policy of the dataset builder and `music-clip index`.

Every file is handled by a worker process of a Pebble pool, with one worker or many: a file whose work runs past
the time limit, or kills its worker (a native decoder crash, the OOM killer), fails that file only, with the
reason; Pebble replaces the worker and the run goes on. Failures are remembered on disk (keyed by the file's
path, size and mtime, since the worker that would have hashed it died), so a re-run skips them without paying
the time limit again until the file changes or the caller asks to retry.

Workers come from a fork server, never from a fork of the caller: a fork after torch has used its OpenMP pool
deadlocks in the child (libgomp), which happens whenever the caller computed anything with torch (tests,
notebooks, the benchmark). Torch-free: the callers' job functions import what they need.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import signal
from collections.abc import Callable, Hashable, Iterator
from concurrent.futures import as_completed
from pathlib import Path
from typing import Any

# A file's work (decode, already capped at the audio path's MAX_SECONDS, plus mel, FLAC and descriptors, each
# clip's in a clip build, or embedding) running longer than this is stopped and the file skipped. Decoding 600 s
# of audio takes seconds; the margin covers a loaded machine. `--decode-time-limit` of the builder and of
# `music-clip index`.
DECODE_TIME_LIMIT_S = 300.0

# The fork server imports these once (no torch op runs there); workers fork from it cheaply. "__main__" too:
# else every worker re-imports the main script (and all it imports) on start.
BASE_PRELOAD = ("__main__", "torchcodec.decoders")


def run_in_workers(
    function: Callable[..., Any],
    jobs: dict[Hashable, tuple],
    workers: int,
    time_limit: float | None,
    initializer: Callable[..., None] | None = None,
    initargs: tuple = (),
    preload: tuple[str, ...] = (),
) -> Iterator[tuple[Hashable, Any]]:
    """`(key, function(*job))` as jobs finish, in `workers` processes (at least one, even for one job).

    A string in place of the result is why the worker gave up on that job (time limit, or the worker died).
    `function` must never raise for one file (it reports instead); `initializer` must not raise either (a
    worker whose initializer fails is restarted by Pebble for ever): it records its error for `function`.
    """
    from pebble import ProcessExpired, ProcessPool

    if not jobs:
        return
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([*BASE_PRELOAD, *preload])
    pool = ProcessPool(
        max(1, min(workers, len(jobs))), initializer=initializer, initargs=initargs, context=context
    )
    try:
        futures = {pool.schedule(function, job, timeout=time_limit or None): key for key, job in jobs.items()}
        for future in as_completed(futures):
            try:
                yield futures[future], future.result()
            except TimeoutError:
                yield futures[future], f"decode time limit: still running after {time_limit:g} s"
            except ProcessExpired as err:
                why = exit_reason(err.exitcode)
                yield futures[future], f"decode worker died: {why} (a native crash or out of memory)"
    except BaseException:
        pool.stop()  # Ctrl-C or an error: drop the queued files (closing would process them all first)
        raise
    else:
        pool.close()  # every file is done: close, then join the idle workers
    finally:
        pool.join()


def exit_reason(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            pass
    return f"exit code {exitcode}"


# --- failures remembered across runs ---------------------------------------------------------------------------
def _failure_record(folder: Path, path: str, settings: Any) -> Path:
    """Where a file whose work killed its worker or ran past the time limit is remembered: keyed by path, size,
    mtime and the caller's settings (JSON-able), not by content hash (the worker that would have hashed the file
    died). A changed file is therefore tried again."""
    try:
        stat = os.stat(path)
        identity: list = [str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns]
    except OSError:
        identity = [path]
    key = hashlib.sha256(json.dumps([identity, settings], default=str).encode()).hexdigest()[:32]
    return folder / "failed" / f"{key}.json"


def recorded_failure(folder: Path, path: str, settings: Any) -> str | None:
    """The reason an earlier run gave up on this file (crash or time limit), if it did."""
    try:
        return str(json.loads(_failure_record(folder, path, settings).read_text(encoding="utf-8"))["reason"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # none, or unreadable: a record is only a shortcut, so the file is tried


def record_failure(folder: Path, path: str, settings: Any, reason: str) -> None:
    record = _failure_record(folder, path, settings)
    record.parent.mkdir(parents=True, exist_ok=True)
    tmp = record.with_name(f".{record.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"path": path, "reason": reason}), encoding="utf-8")
    os.replace(tmp, record)


def forget_failure(folder: Path, path: str, settings: Any) -> None:
    _failure_record(folder, path, settings).unlink(missing_ok=True)


def split_known_failures(
    paths: dict[Hashable, str], folder: Path, settings: Any, retry: bool
) -> tuple[list[Hashable], dict[Hashable, str]]:
    """(keys to do, {key: reason} of files an earlier run gave up on). With `retry` every file is done again."""
    todo, known = [], {}
    for key, path in paths.items():
        reason = None if retry else recorded_failure(folder, path, settings)
        if reason is not None:
            known[key] = f"{reason} (on an earlier run; --retry-skipped tries it again)"
        else:
            forget_failure(folder, path, settings)
            todo.append(key)
    return todo, known
