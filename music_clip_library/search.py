"""`music-clip search IDX "a calm piano piece"` / `--like FILE`: ranked tracks of an index folder."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import library_index
from .embedder import Embedder
from .indexer import COLUMN, DONE_FILE, INDEX_FILE, PARQUET, default_device


@dataclass
class Match:
    rank: int
    score: float
    path: str
    title: str
    artist: str
    duration_s: float


def read_index_info(folder: Path) -> dict:
    done = Path(folder) / DONE_FILE
    if not done.is_file():
        raise ValueError(
            f"{folder} is not a finished index folder (no {DONE_FILE}): run `music-clip index DIR --model M "
            f"--output {folder}` (again: finished work is cached)"
        )
    return json.loads(done.read_text(encoding="utf-8"))


class IndexFolder:
    """The Parquet rows with their FAISS index, loaded through `datasets`."""

    def __init__(self, folder: Path):
        from datasets import Dataset

        self.folder = Path(folder)
        self.info = read_index_info(self.folder)
        self.rows = Dataset.from_parquet(str(self.folder / PARQUET))
        self.rows.load_faiss_index(COLUMN, str(self.folder / INDEX_FILE))
        library_index.set_search_params(
            self.rows.get_index(COLUMN).faiss_index, self.info["index"]["search_params"]
        )

    def search(self, query: np.ndarray, k: int) -> list[Match]:
        k = max(1, min(k, len(self.rows)))
        scores, ids = self.rows.search(COLUMN, np.asarray(query, np.float32).reshape(-1), k=k)
        out = []
        for rank, (score, row) in enumerate(zip(scores, ids), 1):
            if row < 0:
                continue
            r = self.rows[int(row)]
            out.append(Match(rank, float(score), r["path"], r["title"], r["artist"], float(r["duration_s"])))
        return out


def search(
    folder: Path,
    text: str | None = None,
    like: Path | None = None,
    k: int = 10,
    model: str | None = None,
    device: str | None = None,
) -> list[Match]:
    """Text or audio-example query → ranked matches (the model is the index's own unless `model` is given)."""
    if (text is None) == (like is None):
        raise ValueError("give either a text query or --like FILE")
    index = IndexFolder(folder)
    embedder = Embedder(
        model or index.info["model"], load_text=text is not None, device=device or default_device()
    )
    fingerprint = library_index.model_fingerprint(embedder.model, embedder.fe)
    if fingerprint != index.info["model_fingerprint"]:
        raise ValueError(
            f"the model {model or index.info['model']} (fingerprint {fingerprint}) is not the one {folder} was "
            f"indexed with ({index.info['model_fingerprint']}): re-run `music-clip index` with it"
        )
    if text is not None:
        if not text.strip():
            raise ValueError("the text query is empty")
        query = embedder.text(text)
    else:
        if not Path(like).is_file():
            raise ValueError(f"--like {like}: no such file")
        query = embedder.file(Path(like))[0]
    return index.search(query, k)


def format_matches(matches: list[Match]) -> str:
    lines = [f"{'rank':>4}  {'score':>6}  {'length':>7}  title — artist  (path)"]
    for m in matches:
        minutes, seconds = divmod(int(round(m.duration_s)), 60)
        who = f" — {m.artist}" if m.artist else ""
        lines.append(f"{m.rank:>4}  {m.score:6.3f}  {minutes:4d}:{seconds:02d}  {m.title}{who}  ({m.path})")
    return "\n".join(lines)
