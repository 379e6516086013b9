"""Crash-safe files for the builder: atomic writes (temp + fsync + rename) and one builder per output folder."""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_NAME = ".build.lock"


class FolderLocked(ValueError):
    """Another builder holds the output folder (a user-fixable condition: printed without a traceback)."""


def unique_token() -> str:
    """UTC time + random hex: names that two processes (or two runs) never share."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """The file holds the old content or the new, never a part: a unique temp beside it, fsync, rename."""
    tmp = path.with_name(f".{path.name}.{unique_token()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (a power cut after it must not bring the old name back)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold `folder/.build.lock` (flock: the kernel frees it when the holder dies, even by `kill -9`).

    A second builder is refused with the holder's pid, host and start time, read from the lock file.
    """
    folder.mkdir(parents=True, exist_ok=True)
    # "a+": opening must not truncate the holder's note before we know whether we got the lock.
    handle = open(folder / LOCK_NAME, "a+", encoding="utf-8")  # noqa: SIM115 (held until the block ends)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        note = handle.read().strip()
        handle.close()
        raise FolderLocked(
            f"{folder} is being written by another build ({_describe_holder(note)}); wait for it to end or "
            "use another --output"
        ) from None
    try:
        handle.seek(0)
        handle.truncate()
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%FT%TZ", time.gmtime()),
        }
        handle.write(json.dumps(holder))
        handle.flush()
        yield
    finally:
        handle.close()  # closing the last descriptor releases the flock


def _describe_holder(note: str) -> str:
    try:
        holder = json.loads(note)
        return f"pid {holder['pid']} on host {holder['host']}, started {holder['started']}"
    except (ValueError, KeyError, TypeError):
        return "holder not yet recorded: it is starting"
