"""One builder per output folder (or per shard of it): a second is refused, naming the holder."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from music_clip_common.files import ExclusiveLock, LockHeld

LOCK_NAME = ".build.lock"
FolderLocked = LockHeld  # a user-fixable condition: printed without a traceback


@contextmanager
def folder_lock(folder: Path, name: str = LOCK_NAME) -> Iterator[None]:
    """Hold `folder/name` for the block (the OS frees it when the holder dies, even by `kill -9`)."""
    what = "a shard of this folder" if name != LOCK_NAME else "this folder"
    with ExclusiveLock(Path(folder) / name).acquire(
        f"{folder} is being written by another build ({what}); wait for it to end or use another --output",
    ):
        yield
