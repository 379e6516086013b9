"""Content hashes: a file's sha256 (the builder's dedupe and cache key, the index's `file_sha256` column) and
the stable bucket a name falls in (shards: the same on every machine and Python run, unlike `hash()`)."""

from __future__ import annotations

import hashlib
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
