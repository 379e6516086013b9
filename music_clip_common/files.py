"""Crash-safe files for every layer: one atomic write (one fsync rule) and one exclusive lock (filelock).

The fsync rule: a file that appears under its final name is whole on disk, and so is its name. Every write goes to a
unique temp file beside the target, is fsynced, renamed over the target, then the folder is fsynced (a power cut
after the rename must not bring the old name back).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

TEMP_SUFFIX = ".tmp"


def unique_token() -> str:
    """UTC time + random hex: names that two processes (or two runs) never share."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


@contextmanager
def atomic_path(path: Path, suffix: str = "") -> Iterator[Path]:
    """A temp path beside `path` to write to (any writer: numpy, Parquet, FAISS); on leaving the block without
    an error it is fsynced and renamed over `path`, else removed. `suffix` ends the temp name (a writer that
    insists on an extension, e.g. `np.savez` and ".npz")."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{unique_token()}{TEMP_SUFFIX}{suffix}")
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """The file holds the old content or the new, never a part."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable; a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class LockHeld(ValueError):
    """Another process holds the lock (a user-fixable condition: printed without a traceback)."""

    def __init__(self, message: str, holder: dict[str, Any]) -> None:
        super().__init__(message)
        self.holder = holder


def describe_holder(holder: dict[str, Any]) -> str:
    """`pid P on host H, started T` from a holder note, or what is known while the holder is starting."""
    try:
        return f"pid {holder['pid']} on host {holder['host']}, started {holder['started']}"
    except (KeyError, TypeError):
        return "holder not yet recorded: it is starting"


class ExclusiveLock:
    """One holder at a time of `path` (filelock: the OS frees it when the holder dies, even by `kill -9`).

    The holder's note (pid, host, start time and whatever `note()` adds) lives beside the lock in
    `<path>.holder`, so a refused process can say who holds it. `fd` is the locked descriptor: a child process
    that inherits it keeps the lock held after this process dies.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.note_path = self.path.with_name(self.path.name + ".holder")
        self._lock = FileLock(str(self.path), thread_local=False)
        self._facts: dict[str, Any] = {}

    def acquire(self, refusal: str) -> ExclusiveLock:
        """Take the lock now or raise `LockHeld(refusal + " (" + holder + ")")`."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire(blocking=False)
        except Timeout:
            holder = self.holder()
            raise LockHeld(f"{refusal} ({describe_holder(holder)})", holder) from None
        started = time.strftime("%FT%TZ", time.gmtime())
        self._facts = {"pid": os.getpid(), "host": socket.gethostname(), "started": started}
        self.note()
        return self

    def note(self, **facts: Any) -> None:
        """Record the holder (and `facts`, e.g. the stage it runs) for whoever is refused."""
        self._facts.update(facts)
        atomic_write_text(self.note_path, json.dumps(self._facts))

    def holder(self) -> dict[str, Any]:
        try:
            holder = json.loads(self.note_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return holder if isinstance(holder, dict) else {}

    @property
    def fd(self) -> int:
        return self._lock._context.lock_file_fd  # noqa: SLF001 (filelock keeps the descriptor there)

    def release(self) -> None:
        self._lock.release(force=True)

    def __enter__(self) -> ExclusiveLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
