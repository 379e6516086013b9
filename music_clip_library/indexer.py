"""`music-clip index DIR --model M --output IDX`: every audio file under DIR → one embedding → an index folder.

IDX is a dataset folder: `library.parquet` (path, relative path, folder, duration, title, artist, file hash,
embedding), `audio_embedding.faiss` (built through `datasets`' FAISS integration, the Space's index type),
`README.md` (card with the index type), `skipped.jsonl`, and `index.json`, written last: its presence means the
folder is complete. Work is cached per file under `IDX/.cache/embeddings/<model fingerprint>/` by content hash,
so a re-run after `kill -9` embeds only the files that are missing, a changed model embeds everything again, and
renamed or moved files are not embedded twice; a damaged entry (cut, zeroed, empty) is embedded again. Workers
hash, decode and embed under the builder's worker policy (`music_clip_common.workers`, with one worker too): a
file past `--decode-time-limit` or whose worker dies is skipped with its reason (remembered, so a re-run does not
wait for it again; `--retry-skipped` tries it). The main process only collects small records (bounded memory:
one vector and a few strings per file).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from music_clip_common.files import atomic_path, atomic_write_text
from music_clip_common.hashing import file_sha256
from music_clip_common.tags import read_tags
from music_clip_common.workers import (
    DECODE_TIME_LIMIT_S,
    record_failure,
    run_in_workers,
    split_known_failures,
)
from music_clip_data.sources import AUDIO_EXTENSIONS

from . import library_index, shards
from .embedder import Embedder, read_waveform

CACHE_DIR_NAME = ".cache"
DONE_FILE = "index.json"
PARQUET = "library.parquet"
COLUMN = "audio_embedding"
INDEX_FILE = f"{COLUMN}.faiss"
INDEX_TYPES = ("auto", "exact", "approx")


@dataclass
class IndexArgs:
    audio_dir: Path
    model: str
    output: Path
    workers: int = 2
    index_type: str = "auto"
    decode_only: bool = False  # benchmark: hash + decode + mel, no model, nothing written
    decode_time_limit: float | None = DECODE_TIME_LIMIT_S  # seconds one file may take in its worker
    retry_skipped: bool = False  # try again the files whose worker died or ran out of time on an earlier run
    device: str | None = None  # torch device of the workers' model (None: cuda when available, else cpu)
    shard: tuple[int, int] | None = None  # (i, K): index part i of K only (shards.py); None: the whole folder
    finish: bool = False  # merge the K finished parts into the index folder (shards.py)


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


def init_worker(model_dir: str, cache_root: str | None, decode_only: bool, device: str) -> None:
    """Pool initializer: load the model once per process. Each worker fingerprints the model it loaded (its cache
    folder is `cache_root/<fingerprint>`), so the main process never loads the model: that would cost seconds
    before the first file is read. Never raises (Pebble would restart a failing worker for ever): the error is
    kept and every file's record reports it, and the main process stops the run on it."""
    try:
        import torch

        torch.set_num_threads(1)  # N workers use N cores; FFmpeg decodes on one thread anyway
        if decode_only:  # the model's mel settings, no model
            from feature_extraction_music_clip import MusicClipFeatureExtractor

            fe = MusicClipFeatureExtractor.from_pretrained(model_dir)
            _WORKER.update(embedder=None, fe=fe, cache_dir=None)
            return
        embedder = Embedder(model_dir, device=device)
        fingerprint = library_index.model_fingerprint(embedder.model, embedder.fe)
        cache_dir = Path(cache_root) / fingerprint if cache_root else None
        _WORKER.update(embedder=embedder, fe=embedder.fe, cache_dir=cache_dir, fingerprint=fingerprint)
    except Exception as err:  # noqa: BLE001 - reported through every record (see the docstring)
        _WORKER["init_error"] = f"{type(err).__name__}: {err}"[:500]


def cache_path(cache_dir: Path, sha: str) -> Path:
    return cache_dir / sha[:2] / f"{sha}.npz"


def read_cache(path: Path) -> dict | None:
    """The cached entry, or None when it is absent or not a complete, valid one.

    Every failure counts (a 0-byte file raises `EOFError`, a cut one `BadZipFile`, a zeroed one `BadZipFile` or
    `ValueError`, ...): an entry is only a cache, so the file is embedded again, never skipped."""
    try:
        with np.load(path, allow_pickle=False) as data:
            entry = {"embedding": data["embedding"], "duration_s": float(data["duration_s"])}
    except Exception:  # noqa: BLE001 - see the docstring
        return None
    embedding = entry["embedding"]
    if embedding.ndim != 1 or embedding.size == 0 or not np.isfinite(embedding).all():
        return None
    return entry


def write_cache(path: Path, embedding: np.ndarray, duration_s: float) -> None:
    """Atomic (`atomic_path`): a killed process leaves whole entries or none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, embedding=embedding, duration_s=np.float64(duration_s))


def index_one(path: str) -> dict:
    """Hash → cached embedding, or decode + embed + cache. Never raises for one file: reports it instead."""
    record = {"path": path, "ok": False, "reason": "", "embedded": False}
    record.update(fingerprint=_WORKER.get("fingerprint"), init_error=_WORKER.get("init_error"))
    if record["init_error"]:
        return record
    try:
        sha = file_sha256(Path(path))
        record["file_sha256"] = sha
        if Path(path).stat().st_size == 0:
            raise ValueError("empty file (0 bytes)")
        cache_dir = _WORKER["cache_dir"]
        cached = read_cache(cache_path(cache_dir, sha)) if cache_dir else None
        if cached is None:
            cached = _embed(Path(path), cache_dir, sha)
            record["embedded"] = _WORKER["embedder"] is not None
        tags = read_tags(path)
        title, artist = tags.title, tags.artist
        record.update(ok=True, title=title, artist=artist, **cached)
    except ValueError as err:
        record["reason"] = str(err)
    except Exception as err:  # one bad file never stops the library
        record["reason"] = f"unexpected error: {type(err).__name__}: {err}"[:300]
    return record


def _embed(path: Path, cache_dir: Path | None, sha: str) -> dict:
    embedder, fe = _WORKER["embedder"], _WORKER["fe"]
    wave = read_waveform(path, fe)
    seconds = wave.size / fe.sampling_rate
    if embedder is None:  # decode-only pass: the mel is the last step both share
        fe.log_mel(wave)
        return {"embedding": np.zeros(0, np.float32), "duration_s": seconds}
    embedding = embedder.audio(wave)
    if cache_dir:
        write_cache(cache_path(cache_dir, sha), embedding, seconds)
    return {"embedding": embedding, "duration_s": seconds}


# --- main process ---------------------------------------------------------------------------------------------
def run_files(
    files: list[Path],
    args: IndexArgs,
    cache_root: Path | None,
    decode_only: bool = False,
) -> Iterator[dict]:
    """`index_one` over the files (in the order they finish) under the one worker policy
    (`music_clip_common.workers`, with one worker too): a file whose worker dies or runs past
    `args.decode_time_limit` gets a record with the reason, remembered under `cache_root` so that a re-run skips
    it without waiting again (unless `args.retry_skipped`). A model that cannot be loaded stops the run."""
    paths = {i: str(f) for i, f in enumerate(files)}
    failures = cache_root.parent if cache_root else None
    settings = {"model": str(Path(args.model).resolve()), "decode_only": decode_only}
    todo, known = (
        split_known_failures(paths, failures, settings, args.retry_skipped) if failures else (list(paths), {})
    )
    for i, reason in known.items():
        yield {"path": paths[i], "ok": False, "reason": reason, "fingerprint": None, "init_error": None}
    jobs = {i: (paths[i],) for i in todo}
    device = args.device or default_device()
    initargs = (args.model, str(cache_root) if cache_root else None, decode_only, device)
    preload = ("music_clip_library.indexer",)
    limit = args.decode_time_limit
    for i, record in run_in_workers(index_one, jobs, args.workers, limit, init_worker, initargs, preload):
        if isinstance(record, str):  # the worker gave up: remembered, so a re-run does not pay again
            if failures:
                record_failure(failures, paths[i], settings, record)
            record = {
                "path": paths[i],
                "ok": False,
                "reason": record,
                "fingerprint": None,
                "init_error": None,
            }
        if record["init_error"]:
            raise ValueError(f"cannot load the model {args.model} in a worker: {record['init_error']}")
        yield record


def default_device() -> str:
    """cuda when a GPU is visible, else cpu (`--device` of `music-clip` and the Space)."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def index_folder(args: IndexArgs) -> dict:
    """Index `args.audio_dir` into `args.output` (or one part of it, or merge the parts); returns the summary
    also stored in `index.json` (`part.json` for a part)."""
    started = time.perf_counter()
    root = Path(args.audio_dir).resolve()
    if not root.is_dir():
        raise ValueError(f"{args.audio_dir} is not a folder")
    if args.index_type not in INDEX_TYPES:
        raise ValueError(f"--index-type must be one of {INDEX_TYPES}, got {args.index_type!r}")
    if args.finish:
        return shards.finish(Path(args.output), root, args.model, args.index_type)
    skipped: list[dict] = []
    files = audio_files(root, skipped)
    if args.shard:
        files = [f for f in files if shards.in_shard(f.relative_to(root).as_posix(), args.shard)]
        skipped = [
            s for s in skipped if shards.in_shard(Path(s["path"]).relative_to(root).as_posix(), args.shard)
        ]
    if not Path(args.model, "config.json").is_file():
        raise ValueError(f"--model {args.model}: no model folder (config.json) there")
    if args.decode_only:
        return _decode_only(files, args, started)
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    rows, counts, seconds, fingerprint = collect(files, args, output / CACHE_DIR_NAME / "embeddings", skipped)
    if not rows and not args.shard:
        raise ValueError(f"no usable audio file under {root} ({len(skipped)} skipped: see the reasons above)")
    wall = time.perf_counter() - started
    summary = {
        "audio_dir": str(root),
        "model": str(Path(args.model).resolve()) if Path(args.model).exists() else args.model,
        "model_fingerprint": fingerprint,
        "files": len(rows),
        "skipped": len(skipped),
        **counts,
        "audio_hours": round(seconds / 3600, 3),
        "seconds": round(wall, 2),
        "files_per_s": round(len(files) / wall, 2),
        "x_real_time": round(seconds / wall, 1),
        "workers": args.workers,
    }
    if args.shard:
        shards.write_part(output, args.shard, records_table(root, rows), skipped, summary)
        return summary
    summary.update(write_index_folder(output, root, rows, skipped, args.index_type, summary))
    return summary


def collect(
    files: list[Path], args: IndexArgs, cache_root: Path, skipped: list[dict]
) -> tuple[list[dict], dict, float, str | None]:
    """Run every file; (records of the indexed files in `files` order, counts, audio seconds, model
    fingerprint). Failures are appended to `skipped`, which ends sorted by path."""
    records, counts, seconds, fingerprints = {}, {"embedded": 0, "cached": 0}, 0.0, set()
    order = {str(f): i for i, f in enumerate(files)}
    bar = tqdm(total=len(files), desc=f"index ({max(1, args.workers)} proc)", unit="file")
    for record in run_files(files, args, cache_root):
        bar.update()
        if not record["ok"]:
            skipped.append({"path": record["path"], "reason": record["reason"]})
            continue
        fingerprints.add(record["fingerprint"])
        counts["embedded" if record["embedded"] else "cached"] += 1
        seconds += record["duration_s"]
        records[order[record["path"]]] = record
    bar.close()
    if len(fingerprints) > 1:  # the model folder changed while the workers were loading it
        raise ValueError(
            f"--model {args.model} changed during indexing (fingerprints {sorted(fingerprints)})"
        )
    skipped.sort(key=lambda s: s["path"])
    return (
        [records[i] for i in sorted(records)],
        counts,
        seconds,
        (fingerprints.pop() if fingerprints else None),
    )


def _decode_only(files: list[Path], args: IndexArgs, started: float) -> dict:
    """Benchmark: hash + decode + log-mel of every file, in the same processes, nothing embedded or written."""
    seconds = sum(r["duration_s"] for r in run_files(files, args, None, decode_only=True) if r["ok"])
    wall = time.perf_counter() - started
    return {"files": len(files), "seconds": round(wall, 2), "files_per_s": round(len(files) / wall, 2),
            "x_real_time": round(seconds / wall, 1), "workers": args.workers}  # fmt: skip


def records_table(root: Path, records: list[dict]):
    """The index folder's rows (`datasets.Dataset`) of the indexed files' records."""
    from datasets import Dataset, Features, List, Value

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
    embeddings = np.stack([r["embedding"] for r in records]) if records else []
    return Dataset.from_dict(
        {
            "path": [str(p) for p in paths],
            "relative_path": [p.relative_to(root).as_posix() for p in paths],
            "folder": [p.parent.relative_to(root).as_posix() if p.parent != root else "" for p in paths],
            "duration_s": [r["duration_s"] for r in records],
            "title": [r["title"] or p.stem.replace("_", " ") for r, p in zip(records, paths)],
            "artist": [r["artist"] for r in records],
            "file_sha256": [r["file_sha256"] for r in records],
            COLUMN: embeddings,
        },
        features=features,
    )


def write_index_folder(
    output: Path, root: Path, records: list[dict], skipped: list[dict], index_type: str, summary: dict
) -> dict:
    """Parquet + FAISS index + card + skipped.jsonl, then `index.json` last (the folder's done marker)."""
    (output / DONE_FILE).unlink(missing_ok=True)  # from here until the end the folder is not complete
    table = records_table(root, records)
    tmp = output / f"{PARQUET}.tmp"
    table.to_parquet(str(tmp))
    os.replace(tmp, output / PARQUET)
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
