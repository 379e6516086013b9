"""`music-clip index DIR --model M --output IDX`: every audio file under DIR → one embedding → an index folder.

IDX is a dataset folder: `library.parquet` (path, relative path, folder, duration, title, artist, file hash,
embedding), `audio_embedding.faiss` (built through `datasets`' FAISS integration, the Space's index type),
`README.md` (card with the index type), `skipped.jsonl`, and `index.json`, written last: its presence means the
folder is complete. Work is cached per file under `IDX/.cache/embeddings/<model fingerprint>/` by content hash,
so a re-run after `kill -9` embeds only the files that are missing, a changed model embeds everything again, and
renamed or moved files are not embedded twice. Workers (forkserver processes) hash, decode and embed; the main
process only collects small records (bounded memory: one vector and a few strings per file).
"""

from __future__ import annotations

import importlib.util
import json
import multiprocessing
import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from music_clip_common.files import atomic_path, atomic_write_text
from music_clip_common.hashing import file_sha256
from music_clip_data.sources import AUDIO_EXTENSIONS

from .embedder import Embedder, read_tags, read_waveform

ROOT = Path(__file__).resolve().parents[1]
CACHE_DIR_NAME = ".cache"
DONE_FILE = "index.json"
PARQUET = "library.parquet"
COLUMN = "audio_embedding"
INDEX_FILE = f"{COLUMN}.faiss"
INDEX_TYPES = ("auto", "exact", "approx")


def space_index_module():
    """The Space's `library_index` (index type, FAISS parameters, model fingerprint): one definition for the
    Space, the indexer and the benchmark. Loaded by path because the Space is deployed without this package; its
    own modules (`config`) resolve from the Space's folder, placed last on the path so it shadows nothing."""
    name = "musicclip_space_library_index"
    if name not in sys.modules:
        space = str(ROOT / "space")
        if space not in sys.path:
            sys.path.append(space)
        spec = importlib.util.spec_from_file_location(name, ROOT / "space" / "library_index.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
    return sys.modules[name]


@dataclass
class IndexArgs:
    audio_dir: Path
    model: str
    output: Path
    workers: int = 2
    index_type: str = "auto"
    decode_only: bool = False  # benchmark: hash + decode + mel, no model, nothing written


def audio_files(root: Path, skipped: list[dict]) -> list[Path]:
    """Every file under `root` with an audio extension (hidden files and folders left out), sorted."""
    files = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if path.is_dir() or any(part.startswith(".") for part in rel.parts):
            continue
        if path.suffix.lower() in AUDIO_EXTENSIONS:
            files.append(path)
        else:
            skipped.append(
                {"path": str(path), "reason": f"not an audio file extension ({path.suffix or 'none'})"}
            )
    return files


# --- worker side ---------------------------------------------------------------------------------------------
_WORKER: dict = {}


def init_worker(model_dir: str, cache_root: str | None, decode_only: bool = False, threads: int = 1) -> None:
    """Pool initializer (and the in-process path): load the model once per process. Each worker fingerprints the
    model it loaded (its cache folder is `cache_root/<fingerprint>`), so the main process never loads the model:
    that would cost seconds before the first file is read."""
    import torch

    torch.set_num_threads(threads)
    if decode_only:  # the model's mel settings, no model
        from feature_extraction_music_clip import MusicClipFeatureExtractor

        _WORKER.update(embedder=None, fe=MusicClipFeatureExtractor.from_pretrained(model_dir), cache_dir=None)
        return
    embedder = Embedder(model_dir)
    fingerprint = space_index_module().model_fingerprint(embedder.model, embedder.fe)
    cache_dir = Path(cache_root) / fingerprint if cache_root else None
    _WORKER.update(embedder=embedder, fe=embedder.fe, cache_dir=cache_dir, fingerprint=fingerprint)


def cache_path(cache_dir: Path, sha: str) -> Path:
    return cache_dir / sha[:2] / f"{sha}.npz"


def read_cache(path: Path) -> dict | None:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {"embedding": data["embedding"], "duration_s": float(data["duration_s"])}
    except (OSError, ValueError, KeyError):
        return None  # absent (entries appear whole, by rename), or damaged on disk: embed again


def write_cache(path: Path, embedding: np.ndarray, duration_s: float) -> None:
    """Atomic (`atomic_path`): a killed process leaves whole entries or none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, embedding=embedding, duration_s=np.float64(duration_s))


def index_one(path: str) -> dict:
    """Hash → cached embedding, or decode + embed + cache. Never raises for one file: reports it instead."""
    record = {
        "path": path,
        "ok": False,
        "reason": "",
        "embedded": False,
        "fingerprint": _WORKER.get("fingerprint"),
    }
    try:
        sha = file_sha256(Path(path))
        record["file_sha256"] = sha
        if Path(path).stat().st_size == 0:
            raise ValueError("empty file (0 bytes)")
        embedder, cache_dir = _WORKER["embedder"], _WORKER["cache_dir"]
        cached = read_cache(cache_path(cache_dir, sha)) if cache_dir else None
        if cached is None:
            wave = read_waveform(Path(path), _WORKER["fe"])
            if embedder is None:  # decode-only pass: the mel is the last step both share
                _WORKER["fe"].log_mel(wave)
                cached = {
                    "embedding": np.zeros(0, np.float32),
                    "duration_s": wave.size / _WORKER["fe"].sampling_rate,
                }
            else:
                cached = {
                    "embedding": embedder.audio(wave),
                    "duration_s": wave.size / embedder.fe.sampling_rate,
                }
                if cache_dir:
                    write_cache(cache_path(cache_dir, sha), cached["embedding"], cached["duration_s"])
                record["embedded"] = True
        title, artist = read_tags(Path(path))
        record.update(ok=True, title=title, artist=artist, **cached)
    except ValueError as err:
        record["reason"] = str(err)
    except Exception as err:  # one bad file never stops the library
        record["reason"] = f"unexpected error: {type(err).__name__}: {err}"[:300]
    return record


# --- main process ---------------------------------------------------------------------------------------------
def run_files(
    files: list[Path], model_dir: str, cache_root: Path | None, workers: int, decode_only: bool = False
) -> Iterator[dict]:
    """`index_one` over the files in order, in `workers` processes (forkserver: see build_dataset.decode_all)."""
    if workers <= 1 or len(files) <= 1:
        import torch

        threads = torch.get_num_threads()
        # One thread, as in a worker: FFmpeg decodes on one anyway, and OpenMP threads spin badly on a busy machine.
        init_worker(model_dir, str(cache_root) if cache_root else None, decode_only, 1)
        try:
            yield from map(index_one, map(str, files))
        finally:
            _WORKER.clear()
            torch.set_num_threads(threads)
        return
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["music_clip_library.indexer", "torchcodec.decoders"])
    chunksize = max(1, min(4, len(files) // (4 * workers)))
    with ProcessPoolExecutor(
        workers,
        mp_context=context,
        initializer=init_worker,
        initargs=(model_dir, str(cache_root) if cache_root else None, decode_only),
    ) as pool:
        try:
            yield from pool.map(index_one, map(str, files), chunksize=chunksize)
        except BrokenProcessPool:  # a worker's initializer failed (its traceback is above) or it was killed
            raise ValueError(
                f"the worker processes stopped: the model {model_dir} could not be loaded or a worker was killed "
                "(see the error above)"
            ) from None


def index_folder(args: IndexArgs) -> dict:
    """Index `args.audio_dir` into `args.output`; returns the summary also stored in `index.json`."""
    started = time.perf_counter()
    root = Path(args.audio_dir).resolve()
    if not root.is_dir():
        raise ValueError(f"{args.audio_dir} is not a folder")
    if args.index_type not in INDEX_TYPES:
        raise ValueError(f"--index-type must be one of {INDEX_TYPES}, got {args.index_type!r}")
    skipped: list[dict] = []
    files = audio_files(root, skipped)
    if not Path(args.model, "config.json").is_file():
        raise ValueError(f"--model {args.model}: no model folder (config.json) there")
    if args.decode_only:
        return _decode_only(files, args.model, args.workers, started)
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    cache_root = output / CACHE_DIR_NAME / "embeddings"
    records, counts, seconds, fingerprints = [], {"embedded": 0, "cached": 0}, 0.0, set()
    bar = tqdm(total=len(files), desc=f"index ({max(1, args.workers)} proc)", unit="file")
    for record in run_files(files, args.model, cache_root, args.workers):
        bar.update()
        fingerprints.add(record["fingerprint"])
        if not record["ok"]:
            skipped.append({"path": record["path"], "reason": record["reason"]})
            continue
        counts["embedded" if record["embedded"] else "cached"] += 1
        seconds += record["duration_s"]
        records.append(record)
    bar.close()
    if not records:
        raise ValueError(f"no usable audio file under {root} ({len(skipped)} skipped: see the reasons above)")
    if len(fingerprints) != 1:  # the model folder changed while the workers were loading it
        raise ValueError(
            f"--model {args.model} changed during indexing (fingerprints {sorted(fingerprints)})"
        )
    fingerprint = fingerprints.pop()
    wall = time.perf_counter() - started
    summary = {
        "audio_dir": str(root),
        "model": str(Path(args.model).resolve()) if Path(args.model).exists() else args.model,
        "model_fingerprint": fingerprint,
        "files": len(records),
        "skipped": len(skipped),
        **counts,
        "audio_hours": round(seconds / 3600, 3),
        "seconds": round(wall, 2),
        "files_per_s": round(len(files) / wall, 2),
        "x_real_time": round(seconds / wall, 1),
        "workers": args.workers,
    }
    summary.update(write_index_folder(output, root, records, skipped, args.index_type, summary))
    return summary


def _decode_only(files: list[Path], model_dir: str, workers: int, started: float) -> dict:
    """Benchmark: hash + decode + log-mel of every file, in the same processes, nothing embedded or written."""
    seconds = sum(
        r["duration_s"] for r in run_files(files, model_dir, None, workers, decode_only=True) if r["ok"]
    )
    wall = time.perf_counter() - started
    return {"files": len(files), "seconds": round(wall, 2), "files_per_s": round(len(files) / wall, 2),
            "x_real_time": round(seconds / wall, 1), "workers": workers}  # fmt: skip


def write_index_folder(
    output: Path, root: Path, records: list[dict], skipped: list[dict], index_type: str, summary: dict
) -> dict:
    """Parquet + FAISS index + card + skipped.jsonl, then `index.json` last (the folder's done marker)."""
    from datasets import Dataset, Features, List, Value

    (output / DONE_FILE).unlink(missing_ok=True)  # from here until the end the folder is not complete
    paths = [Path(r["path"]) for r in records]
    features = Features(
        {
            "path": Value("string"),
            "relative_path": Value("string"),
            "folder": Value("string"),
            "duration_s": Value("float32"),
            "title": Value("string"),
            "artist": Value("string"),
            "file_sha256": Value("string"),
            COLUMN: List(Value("float32")),
        }
    )
    table = Dataset.from_dict(
        {
            "path": [str(p) for p in paths],
            "relative_path": [p.relative_to(root).as_posix() for p in paths],
            "folder": [p.parent.relative_to(root).as_posix() if p.parent != root else "" for p in paths],
            "duration_s": [r["duration_s"] for r in records],
            "title": [r["title"] or p.stem.replace("_", " ") for r, p in zip(records, paths)],
            "artist": [r["artist"] for r in records],
            "file_sha256": [r["file_sha256"] for r in records],
            COLUMN: np.stack([r["embedding"] for r in records]),
        },
        features=features,
    )
    tmp = output / f"{PARQUET}.tmp"
    table.to_parquet(str(tmp))
    os.replace(tmp, output / PARQUET)
    library_index = space_index_module()
    index_info = library_index.add_index(
        table, COLUMN, approximate={"auto": None, "exact": False, "approx": True}[index_type]
    )
    tmp = output / f"{INDEX_FILE}.tmp"
    table.save_faiss_index(COLUMN, str(tmp))
    os.replace(tmp, output / INDEX_FILE)
    atomic_write_text(
        output / "skipped.jsonl", "".join(json.dumps(s, ensure_ascii=False) + "\n" for s in skipped)
    )
    info = {"index": index_info, "dim": len(records[0]["embedding"])}
    atomic_write_text(output / "README.md", card(summary | info))
    atomic_write_text(output / DONE_FILE, json.dumps(summary | info, indent=2))
    return info


def card(summary: dict) -> str:
    index = summary["index"]
    return (
        "---\nconfigs:\n- config_name: default\n  data_files:\n  - split: train\n    path: library.parquet\n---\n"
        f"# Music library index\n\n{summary['files']} audio files under `{summary['audio_dir']}` "
        f"({summary['audio_hours']} h), one embedding per whole track from the model `{summary['model']}` "
        f"(fingerprint `{summary['model_fingerprint']}`), {summary['skipped']} skipped (`skipped.jsonl`).\n\n"
        f"- Index type: `{index['factory']}` (FAISS, inner product on L2-normalised embeddings), search parameters "
        f"`{index['search_params'] or 'none (exact)'}`; file `{INDEX_FILE}`.\n"
        f"- Columns: path, relative_path, folder, duration_s, title, artist (from tags; the file name when "
        f"untagged), file_sha256, {COLUMN}.\n"
        '- Search it: `music-clip search THIS_FOLDER "a calm piano piece"` or `--like FILE`; serve it: '
        "`python space/app.py --library THIS_FOLDER`.\n"
    )
