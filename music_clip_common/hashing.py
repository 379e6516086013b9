"""Content hashes: a file's sha256 (the builder's dedupe and cache key, the index's `file_sha256` column), a
dataset folder's fingerprint (what keys its `datasets` Arrow cache) and the stable bucket a name falls in
(shards: the same on every machine and Python run, unlike `hash()`)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

BLOCK_BYTES = 1 << 20


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(BLOCK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def stable_bucket(name: str, buckets: int) -> int:
    """Which of `buckets` parts `name` belongs to: 0 .. buckets-1, fixed by the name alone."""
    return int(text_sha256(name)[:16], 16) % buckets


def folder_fingerprint(folder: Path) -> str:
    """Names, sizes and mtimes of a dataset folder's files (hidden caches such as ours and the builder's
    `.cache/` excluded)."""
    files = []
    for root, dirs, names in os.walk(folder, followlinks=True):
        dirs[:] = [d for d in dirs if not d.startswith(".")]  # never walk into a cache of thousands of files
        files += [Path(root, name) for name in names if not name.startswith(".")]
    digest = hashlib.sha256()
    for path in sorted(files):
        stat = path.stat()
        digest.update(f"{path.relative_to(folder)}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return digest.hexdigest()[:16]


def local_datasets_cache(folder: Path) -> Path:
    """The `datasets` Arrow cache of a local dataset folder, keyed by its files: datasets 5.2 names its own cache
    by the folder's name and the config only, so two folders of one name, or a folder rebuilt in place, would
    read each other's rows. Inside the folder's hidden `.cache/` when it is writable, else under the HF cache."""
    key = f"datasets-{folder_fingerprint(folder)}"
    if os.access(folder, os.W_OK):
        return folder.resolve() / ".cache" / key
    from datasets import config  # its own resolution of HF_DATASETS_CACHE and HF_HOME

    return Path(config.HF_DATASETS_CACHE) / "musicclip-local" / text_sha256(str(folder.resolve()))[:16] / key
