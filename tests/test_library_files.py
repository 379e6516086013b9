"""The Space library's cache files under concurrency: two workers building one index, searches sharing audio."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import faiss
import numpy as np
from datasets import Dataset

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "space"))

from music_clip_library.library_index import AUDIO_INDEX, Library  # noqa: E402


def _embeddings(n: int = 64, dim: int = 8) -> Dataset:
    vectors = np.random.default_rng(0).normal(size=(n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return Dataset.from_dict({AUDIO_INDEX: vectors.tolist()})


def test_two_workers_building_one_index_both_get_it(tmp_path: Path) -> None:
    """Worker B builds and publishes the index while worker A is between writing its copy and renaming it."""
    path = tmp_path / "audio.faiss"
    first, second = _embeddings(), _embeddings()
    save = first.save_faiss_index

    def save_then_let_the_other_worker_finish(column: str, file: Path) -> None:
        save(column, file)
        Library._attach(second, AUDIO_INDEX, path)  # the other worker, start to end

    first.save_faiss_index = save_then_let_the_other_worker_finish
    Library._attach(
        first, AUDIO_INDEX, path
    )  # main: FileNotFoundError, B renamed the shared audio.partial away
    assert faiss.read_index(str(path)).ntotal == 64
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audio.faiss"]  # no partial file left behind


def test_concurrent_searches_write_each_result_audio_whole(tmp_path: Path) -> None:
    data = np.random.default_rng(1).integers(0, 256, 8_000_000, dtype=np.uint8).tobytes()
    library = Library.__new__(Library)  # only what `audio_file` reads: the rows' audio and the folder
    library.audio_rows = Dataset.from_dict({"track_id": ["t"], "audio": [{"bytes": data, "path": "t.flac"}]})
    library.audio_dir = tmp_path
    threads, rounds = 6, 12
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []
    paths: set[str] = set()

    def search() -> None:
        for _ in range(rounds):
            barrier.wait()  # every thread finds the file missing at once, as concurrent searches do
            try:
                paths.add(library.audio_file(0))
            except BaseException as exc:  # noqa: BLE001 - the race's symptom, reported below
                errors.append(exc)
            if barrier.wait() == 0:  # one thread checks what the round left, then empties the folder
                for f in tmp_path.iterdir():
                    if f.read_bytes() != data:
                        errors.append(AssertionError(f"{f.name} is not the track's audio"))
                    f.unlink()
            barrier.wait()

    workers = [threading.Thread(target=search) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not errors, f"{len(errors)} of {threads * rounds} searches failed: {errors[0]!r}"
    assert len(paths) == 1
