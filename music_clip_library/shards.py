"""`music-clip index DIR --output IDX --shard i/K` and `--finish`: one library indexed as K parts that any job
scheduler can run side by side (on one machine or many sharing IDX), then merged into the one index folder.

A file belongs to part `i` (0-based) when a stable hash of its path relative to DIR is `i` modulo K: the parts
are disjoint, cover the folder, and do not depend on the machine or the order files are found. Each part writes
`IDX/.parts/<i>-of-<K>/` (`library.parquet`, `skipped.jsonl`, then `part.json`, its done marker) and shares
`IDX/.cache/` (embeddings by content hash, remembered failures), so a killed part resumes like a killed run.
`--finish` checks that all K parts are there and were made from the same folder with the same model, and writes
the index folder from their rows (in the order one run writes them, with the FAISS index built from the merged
embeddings), as one run would.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

PARTS_DIR = ".parts"
PART_DONE = "part.json"


def parse_shard(text: str) -> tuple[int, int]:
    """ "i/K" → (i, K), 0 <= i < K (0-based, as Slurm array and Kubernetes indexed Job indexes are)."""
    try:
        index, count = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard {text!r}: write it i/K, e.g. 0/4 (the first of four parts)") from None
    if not 0 <= index < count:
        raise ValueError(f"--shard {text!r}: i must be in 0..K-1 (0-based)")
    return index, count


def in_shard(relative_path: str, shard: tuple[int, int]) -> bool:
    digest = hashlib.sha256(relative_path.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % shard[1] == shard[0]


def part_dir(output: Path, shard: tuple[int, int]) -> Path:
    return Path(output) / PARTS_DIR / f"{shard[0]}-of-{shard[1]}"


def write_part(output: Path, shard: tuple[int, int], table, skipped: list[dict], summary: dict) -> None:
    """The part's rows (the index folder's columns), its skipped files, then `part.json` last."""
    from music_clip_common.files import atomic_write_text

    folder = part_dir(output, shard)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / PART_DONE).unlink(missing_ok=True)
    table.to_parquet(str(folder / "library.parquet"))
    atomic_write_text(
        folder / "skipped.jsonl", "".join(json.dumps(s, ensure_ascii=False) + "\n" for s in skipped)
    )
    atomic_write_text(folder / PART_DONE, json.dumps({**summary, "shard": list(shard)}, indent=2))


def read_parts(output: Path, audio_dir: Path, model: str) -> list[tuple[Path, dict]]:
    """Every finished part of IDX, checked: all K present, one folder, one model. Raises `ValueError` saying
    which part to (re)run otherwise."""
    found = sorted(Path(output, PARTS_DIR).glob(f"*/{PART_DONE}"))
    if not found:
        raise ValueError(f"{output} holds no finished part: run `music-clip index ... --shard i/K` first")
    parts = [(done.parent, json.loads(done.read_text(encoding="utf-8"))) for done in found]
    counts = {info["shard"][1] for _, info in parts}
    if len(counts) != 1:
        raise ValueError(
            f"{output} holds parts of different splits (K = {sorted(counts)}): remove the stale ones"
        )
    count = counts.pop()
    have = {info["shard"][0] for _, info in parts}
    missing = sorted(set(range(count)) - have)
    if missing:
        raise ValueError(
            f"part(s) {', '.join(f'{i}/{count}' for i in missing)} of {output} missing or unfinished: run "
            f"`music-clip index {audio_dir} --output {output} --shard {missing[0]}/{count}` (finished work is cached)"
        )
    expected = {"audio_dir": str(Path(audio_dir).resolve()), "model": str(Path(model).resolve())}
    # A part with no indexable file has no fingerprint (None).
    fingerprints = {info["model_fingerprint"] for _, info in parts if info["model_fingerprint"]}
    for folder, info in parts:
        for key, value in expected.items():
            if info[key] != value:
                raise ValueError(
                    f"part {folder.name} was made with {key} {info[key]}, not {value}: run it again"
                )
    if len(fingerprints) != 1:
        raise ValueError(
            f"the parts were embedded with different models (fingerprints {sorted(fingerprints)})"
            if fingerprints
            else f"no part of {output} indexed a file: nothing to merge (see the parts' skipped.jsonl)"
        )
    return parts


def finish(output: Path, audio_dir: Path, model: str, index_type: str) -> dict:
    """Merge the K parts into the index folder; returns its summary (with `merge_seconds`)."""
    from datasets import Dataset, concatenate_datasets

    from .indexer import write_index_folder

    started = time.perf_counter()
    parts = read_parts(output, audio_dir, model)
    table = concatenate_datasets(
        [Dataset.from_parquet(str(folder / "library.parquet")) for folder, _ in parts]
    )
    rows = table.to_list()
    rows.sort(key=lambda r: Path(r["path"]))  # the order one run writes (its files, sorted)
    skipped = [json.loads(line) for folder, _ in parts for line in (folder / "skipped.jsonl").open()]
    skipped.sort(key=lambda s: s["path"])
    infos = [info for _, info in parts]
    fingerprint = next(info["model_fingerprint"] for info in infos if info["model_fingerprint"])
    summary = {
        "audio_dir": infos[0]["audio_dir"],
        "model": infos[0]["model"],
        "model_fingerprint": fingerprint,
    }
    summary |= {key: sum(info[key] for info in infos) for key in ("files", "skipped", "embedded", "cached")}
    summary |= {
        "audio_hours": round(sum(r["duration_s"] for r in rows) / 3600, 3),
        "parts": len(parts),
        "part_seconds": [info["seconds"] for info in infos],
    }
    for row in rows:
        row["embedding"] = row.pop("audio_embedding")
    summary.update(
        write_index_folder(Path(output), Path(audio_dir).resolve(), rows, skipped, index_type, summary)
    )
    summary["merge_seconds"] = round(time.perf_counter() - started, 2)
    return summary
