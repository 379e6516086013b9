"""The searchable library: the dataset's stored mels → audio embeddings → a FAISS index (datasets' integration).

Embeddings and indexes are cached on disk next to the dataset under a key made of the model's and the
dataset's fingerprints, so a new checkpoint or a rebuilt dataset gets a fresh index and a restart reuses it.
An index folder written by `music-clip index` (it has `index.json`) is served as it is: its rows, embeddings and
FAISS index, with results played from the original files.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
import torch
from datasets import (
    Audio,
    Dataset,
    Value,
    concatenate_datasets,
    get_dataset_config_names,
    load_dataset,
)

from audio_music_clip import AUDIO_PATH_VERSION
from music_clip_common.hashing import folder_fingerprint, local_datasets_cache

from .refs import locate

AUDIO_INDEX = "audio_embedding"
TEXT_INDEX = "caption_embedding"
# Under which terms a track may be played and whom to credit (CC-BY requires it): filled by sources that know
# (the real-music source), "" for the rest and for libraries built before these columns existed.
CREDIT_COLUMNS = ["license", "attribution"]
META_COLUMNS = ["track_id", "title", "artist", "source", "caption", "genre", *CREDIT_COLUMNS]
EXACT_LIMIT = 20_000  # below this an exact IndexFlatIP answers in well under a millisecond
# The approximate index (benchmarks/bench_search.py measures recall@10 against exact search, p95 latency, build
# time and memory at 1M vectors on 2 cores): inverted lists over the full vectors (IVF…,Flat: scores are exact
# inner products, so near-ties inside a cluster rank as exact search ranks them), ~4√n lists from a spherical
# k-means (cosine centroids: the embeddings are L2-normalised) on 64 sampled points a list, the query compared
# with every centroid (a flat coarse quantizer: 4,096 × 512 at 1M, ~1 ms) and 16 lists scanned. Measured at 100k
# on the benchmark's data: recall@10 1.000 at nprobe 8-64 (p95 0.2-1.3 ms). Rejected by measurement:
# HNSW32,Flat (no training, but greedy graph walks find no gradient between unrelated clusters: recall@10 0.72 /
# 0.80 at efSearch 128 / 256 at 1M, 0.999 at 100k); IVF behind an HNSW coarse quantizer (the same walk over the
# centroids: recall plateaued at 0.82-0.98 whatever nprobe); √n lists with non-spherical k-means and PQ codes
# (half the lists probed for 0.970 at 1M, p95 98 ms). At 1M (IVF4096): recall@10 1.000 at nprobe 8 / 16 / 32,
# p95 0.66 / 0.94 / 1.62 ms; build 646 s at load ~3 (272 CPU-s), index 1,969 MB (4·dim bytes + an id a vector).
LISTS_PER_SQRT_N = 4
APPROX_NPROBE = 16
TRAIN_POINTS_PER_LIST = 64
INDEX_DONE_FILE = "index.json"  # marks a finished `music-clip index` folder
MAP_POINTS = 3_000
CACHE_DIR_NAME = ".musicclip-space"  # the library map shows a fixed-seed sample of at most this many tracks


@dataclass
class Hit:
    rank: int
    score: float
    track_id: str
    title: str
    artist: str
    genre: str
    caption: str
    license: str = ""
    attribution: str = ""
    audio_path: str | None = None

    @classmethod
    def of_row(cls, rank: int, score: float, row: dict, audio_path: str | None = None) -> Hit:
        """A result from one row of the library's tables (a missing text is "")."""
        texts = ("track_id", "title", "artist", "genre", "caption", *CREDIT_COLUMNS)
        return cls(rank, float(score), **{c: row[c] or "" for c in texts}, audio_path=audio_path)


def index_factory(n: int, approximate: bool | None = None, dim: int = 512) -> tuple[str, str]:
    """FAISS factory string and search parameters for `n` vectors of `dim`: exact up to `EXACT_LIMIT`, the
    approximate type beyond (or as `approximate` forces, e.g. for a test or a user's choice: a tiny library gets
    a few lists, all of them probed)."""
    if approximate is None:
        approximate = n > EXACT_LIMIT
    if not approximate:
        return "Flat", ""
    nlist = 2 ** round(math.log2(LISTS_PER_SQRT_N * math.sqrt(max(n, 1))))
    nlist = max(1, min(nlist, n // 8))  # k-means wants several points a list
    return f"IVF{nlist},Flat", f"nprobe={min(nlist, APPROX_NPROBE)}"


def add_index(ds: Dataset, column: str, approximate: bool | None = None) -> dict:
    """`ds.add_faiss_index` with inner product on the (already L2-normalised) column; returns its type."""
    dim = len(ds[0][column])
    factory, params = index_factory(len(ds), approximate, dim)
    index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    if not index.is_trained:  # on a random sample: a library sorted by folder would bias the first rows
        ivf = faiss.extract_index_ivf(index)
        ivf.cp.spherical = True  # unit-norm centroids: inner product = cosine, no list grows by its norm
        rows = np.random.default_rng(0).permutation(len(ds))[: TRAIN_POINTS_PER_LIST * ivf.nlist]
        index.train(np.asarray(ds.select(np.sort(rows)).with_format("numpy")[column], dtype=np.float32))
    ds.add_faiss_index(column, custom_index=index, batch_size=10_000)
    set_search_params(ds.get_index(column).faiss_index, params)
    return {"factory": factory, "search_params": params}


def set_search_params(index: faiss.Index, params: str) -> None:
    """E.g. "nprobe=16" (FAISS' ParameterSpace syntax)."""
    if params:  # "" = exact index, which has none
        faiss.ParameterSpace().set_index_parameters(index, params)


def index_file_name(n: int) -> str:
    """The cached index's file name carries its type, so a cache from another index type is never reused."""
    factory, params = index_factory(n)
    return "audio-" + hashlib.sha256(f"{factory}:{params}".encode()).hexdigest()[:8] + ".faiss"


def model_fingerprint(model: torch.nn.Module, feature_extractor) -> str:
    """Content hash of the weights, the mel settings and the audio path's version (decoding, downmix,
    resampling): any change to one of them means new embeddings."""
    # The mel settings only (not which class or processor saved them), so the Space's AutoProcessor and the
    # indexer's extractor agree on one model.
    settings = {
        k: v for k, v in feature_extractor.to_dict().items() if k not in ("processor_class", "auto_map")
    }
    digest = hashlib.sha256(json.dumps([settings, AUDIO_PATH_VERSION], sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def load_library(ref: str, cache_dir: str | None = None) -> Dataset:
    """Both configs of a MusicCLIP dataset (folder or Hub id) as one table: captions rows keep their caption,
    genres rows their genre name; audio stays undecoded (bytes) until a result is played."""
    name, revision = locate(ref, remote_code=False)  # a missing folder is "not found", never a Hub dataset
    configs = get_dataset_config_names(name, revision=revision)
    loaded = {
        c: load_dataset(name, c, revision=revision, cache_dir=cache_dir)
        for c in ("captions", "genres")
        if c in configs
    }
    if not loaded:
        raise ValueError(f"`{ref}` has neither a `captions` nor a `genres` config.")
    names = next(iter(loaded["genres"].values())).features["genre"].names if "genres" in loaded else []
    parts = [
        _normalise_rows(split, config, names)
        for config, splits in loaded.items()
        for split in splits.values()
    ]
    return concatenate_datasets(parts)


def _normalise_rows(ds: Dataset, config: str, names: list[str]) -> Dataset:
    if config == "genres":
        ds = ds.cast_column("genre", Value("int64"))
        ds = ds.map(lambda g: {"genre": [names[i] for i in g]}, input_columns="genre", batched=True)
        ds = ds.cast_column("genre", Value("string"))
        ds = ds.add_column("caption", [""] * len(ds))
    else:
        # Captioned tracks carry no label; a tag that is exactly a class name (e.g. an immich mood) stands in.
        known = set(names)
        ds = ds.add_column("genre", [next((tag for tag in tags if tag in known), "") for tags in ds["tags"]])
    for column in CREDIT_COLUMNS:
        if column not in ds.column_names:
            ds = ds.add_column(column, [""] * len(ds))
    ds = ds.cast_column("audio", Audio(decode=False))
    return ds.select_columns([*META_COLUMNS, "mel", "audio"])


def load_libraries(refs: list[str], cache_root: str | None) -> tuple[Dataset, Path, str]:
    """Every ref's rows as one table, the cache folder (the first ref's) and a key naming every ref's content,
    so adding, removing or rebuilding any of them gets a fresh index."""
    parts, keys, base = [], [], _cache_base(refs[0], cache_root)
    for ref in refs:
        local = Path(ref).is_dir()
        data_fp = folder_fingerprint(Path(ref)) if local else None
        cache_dir = None
        if local:  # its own Arrow cache, keyed by its files (see local_datasets_cache)
            cache_dir = str(
                Path(cache_root) / f"datasets-{data_fp}" if cache_root else local_datasets_cache(Path(ref))
            )
        parts.append(load_library(ref, cache_dir=cache_dir))
        keys.append(data_fp or ref)
        # A Hub id first: the cache goes next to datasets' own Arrow files.
        if ref == refs[0] and not local and not cache_root and parts[0].cache_files:
            base = Path(parts[0].cache_files[0]["filename"]).parent / CACHE_DIR_NAME
    rows = parts[0] if len(parts) == 1 else concatenate_datasets(parts)
    return rows, base, ";".join(keys)


class Library:
    """The library dataset with its FAISS indexes; `search_*` return ranked `Hit`s."""

    def __init__(self, refs: str | Sequence[str], model, cache_root: str | None = None, batch_size: int = 8):
        """`refs`: one dataset folder / Hub id, or several searched as one library (e.g. the renders and the
        real tracks); a `music-clip index` folder is served alone."""
        self.refs = [refs] if isinstance(refs, str) else list(refs)
        self.model = model
        self.audio_roots: list[str] = []  # folders of original files results are played from
        self._projections: dict[str, dict[str, list]] = {}
        index_folders = [r for r in self.refs if (Path(r) / INDEX_DONE_FILE).is_file()]
        if index_folders and len(self.refs) > 1:
            raise ValueError(f"the `music-clip index` folder {index_folders[0]} is served alone")
        if index_folders:
            self._open_index_folder(Path(index_folders[0]), cache_root)
            return
        rows, base, data_key = load_libraries(self.refs, cache_root)
        fp = hashlib.sha256(
            f"{model_fingerprint(model.model, model.feature_extractor)}:{data_key}:{rows._fingerprint}".encode()
        ).hexdigest()[:16]
        self.cache_dir = base / f"index-{fp}"
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.audio_dir = self.cache_dir / "audio"
        self.audio_dir.mkdir(exist_ok=True)

        embeddings = rows.map(
            lambda mels: {AUDIO_INDEX: list(model.audio_embeddings([np.asarray(m) for m in mels]))},
            input_columns="mel",
            batched=True,
            batch_size=batch_size,
            remove_columns=rows.column_names,
            cache_file_name=str(self.cache_dir / "audio_embeddings.arrow"),
            new_fingerprint=f"{fp}-audio",
            desc="Embedding the library",
        )
        self.embeddings = embeddings
        self.audio_rows = rows.remove_columns("mel")
        self.tracks = concatenate_datasets([self.audio_rows.select_columns(META_COLUMNS), embeddings], axis=1)
        with_caption = [i for i, c in enumerate(self.tracks["caption"]) if c]
        captions = self.tracks.select(with_caption).select_columns(META_COLUMNS)
        self.captions = captions.map(
            lambda texts: {TEXT_INDEX: list(model.text_embeddings(texts))},
            input_columns="caption",
            batched=True,
            batch_size=64,
            cache_file_name=str(self.cache_dir / "caption_embeddings.arrow"),
            new_fingerprint=f"{fp}-captions",
            desc="Embedding the captions",
        )
        self._attach(self.tracks, AUDIO_INDEX, self.cache_dir / index_file_name(len(self.tracks)))

        if len(self.captions):
            self._attach(self.captions, TEXT_INDEX, self.cache_dir / "captions.faiss")
        self.genres = sorted({g for g in self.tracks["genre"] if g})
        self.index_type = index_factory(len(self.tracks))[0]

    def _open_index_folder(self, folder: Path, cache_root: str | None) -> None:
        """A `music-clip index` folder: its rows and FAISS index as they are (same model required)."""
        info = json.loads((folder / INDEX_DONE_FILE).read_text(encoding="utf-8"))
        mine = model_fingerprint(self.model.model, self.model.feature_extractor)
        if info["model_fingerprint"] != mine:
            raise ValueError(
                f"the index folder {folder} was embedded with model {info['model']} (fingerprint "
                f"{info['model_fingerprint']}), not with this Space's model ({mine}): index it with this model"
            )
        rows = Dataset.from_parquet(str(folder / "library.parquet"))
        n = len(rows)
        self.audio_rows = Dataset.from_dict(
            {
                "track_id": rows["path"],
                "title": rows["title"],
                "artist": rows["artist"],
                "source": ["library"] * n,
                "caption": [""] * n,
                "genre": [f.split("/")[0] for f in rows["folder"]],  # the top folder: a genre by convention
                **{column: [""] * n for column in CREDIT_COLUMNS},
                "audio": [{"bytes": None, "path": p} for p in rows["path"]],
            }
        ).cast_column("audio", Audio(decode=False))
        self.embeddings = rows.select_columns([AUDIO_INDEX])
        self.tracks = concatenate_datasets(
            [self.audio_rows.select_columns(META_COLUMNS), self.embeddings], axis=1
        )
        self.tracks.load_faiss_index(AUDIO_INDEX, str(folder / f"{AUDIO_INDEX}.faiss"))
        set_search_params(self.tracks.get_index(AUDIO_INDEX).faiss_index, info["index"]["search_params"])
        self.index_type = info["index"]["factory"]
        self.captions = self.audio_rows.select([]).select_columns(META_COLUMNS)
        self.genres = sorted({g for g in self.tracks["genre"] if g})
        self.audio_roots = [info["audio_dir"]]
        self.cache_dir = _cache_base(str(folder), cache_root) / "index-folder"
        self.audio_dir = self.cache_dir / "audio"
        self.audio_dir.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def _attach(ds: Dataset, column: str, path: Path) -> None:
        if path.exists():
            ds.load_faiss_index(column, path)
            set_search_params(ds.get_index(column).faiss_index, index_factory(len(ds))[1])
        else:
            add_index(ds, column)
            with _temp_beside(path) as partial:
                ds.save_faiss_index(column, partial)
                os.replace(partial, path)  # a killed start never leaves a half-written index behind

    def __len__(self) -> int:
        return len(self.tracks)

    def search_audio(self, query: np.ndarray, k: int) -> list[Hit]:
        """Tracks nearest to one normalised query embedding (text or audio side)."""
        k = min(k, len(self.tracks))
        result = self.tracks.search(AUDIO_INDEX, query.astype(np.float32).reshape(-1), k=k)
        return [
            self._hit(rank, s, i, with_audio=True) for rank, (s, i) in enumerate(zip(*result), 1) if i >= 0
        ]

    def search_captions(self, audio_query: np.ndarray, k: int) -> list[Hit]:
        """Library captions nearest to one normalised audio embedding (music → text)."""
        if not len(self.captions):
            return []
        k = min(k, len(self.captions))
        scores, rows = self.captions.search(TEXT_INDEX, audio_query.astype(np.float32).reshape(-1), k=k)
        out = []
        for rank, (score, row) in enumerate(zip(scores, rows), 1):
            r = self.captions[int(row)]
            out.append(Hit.of_row(rank, score, r))
        return out

    def _hit(self, rank: int, score: float, row: int, with_audio: bool) -> Hit:
        path = self.audio_file(int(row)) if with_audio else None
        return Hit.of_row(rank, score, self.tracks[int(row)], path)

    def audio_file(self, row: int) -> str | None:
        """Write a result's stored audio bytes to the cache once, so Gradio can serve and play it."""
        audio = self.audio_rows[row]["audio"]
        if not audio or not audio.get("bytes"):
            return audio.get("path") if audio else None
        suffix = Path(audio.get("path") or "x.flac").suffix or ".flac"
        # The row too: two libraries served together may reuse a track id.
        name = hashlib.sha1(f"{row}:{self.audio_rows[row]['track_id']}".encode()).hexdigest()[:16] + suffix
        path = self.audio_dir / name
        if not path.exists():
            with _temp_beside(path) as tmp:
                tmp.write_bytes(audio["bytes"])
                os.replace(tmp, path)
        return str(path)

    def projection(self, method: str = "PCA") -> dict[str, list]:
        """2-D coordinates of (a fixed sample of) the library's audio embeddings, for the map."""
        if method not in self._projections:
            from sklearn.decomposition import PCA  # only the map needs scikit-learn: keep start-up lean
            from sklearn.manifold import TSNE

            n = len(self.tracks)
            rows = (
                np.sort(np.random.default_rng(0).permutation(n)[:MAP_POINTS])
                if n > MAP_POINTS
                else np.arange(n)
            )
            sample = self.audio_rows.select(rows)  # `tracks` carries the index, which forbids select
            emb = np.asarray(self.embeddings.select(rows)[AUDIO_INDEX], dtype=np.float32)
            if method == "t-SNE" and len(emb) > 3:
                xy = TSNE(
                    n_components=2, perplexity=min(30.0, (len(emb) - 1) / 3), random_state=0
                ).fit_transform(emb)
            else:
                xy = PCA(n_components=2, random_state=0).fit_transform(emb)
            self._projections[method] = {
                "x": xy[:, 0].tolist(),
                "y": xy[:, 1].tolist(),
                "genre": [g or "(captions only)" for g in sample["genre"]],
                "title": sample["title"],
                "track_id": sample["track_id"],
                **{column: sample[column] for column in CREDIT_COLUMNS},
            }
        return self._projections[method]


@contextmanager
def _temp_beside(path: Path) -> Iterator[Path]:
    """A temp name next to `path` that no other worker or thread shares: two may build the same file at once,
    each renames its own complete copy into place (the last wins, both are whole). Removed if left behind."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
    try:
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


def _cache_base(ref: str, cache_root: str | None) -> Path:
    """Inside a writable local dataset folder; otherwise under the Hugging Face cache, one folder per ref."""
    if cache_root:
        return Path(cache_root)
    local = Path(ref)
    if local.is_dir() and os.access(local, os.W_OK):
        return local.resolve() / CACHE_DIR_NAME
    hf_home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
    return hf_home / "musicclip-space" / hashlib.sha256(str(local.resolve()).encode()).hexdigest()[:16]
