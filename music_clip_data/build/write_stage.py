"""Stage 5, write: the Parquet shards of both configs (new names per build: the previous build's shards stay
readable until the card names the new ones) and the feature extractor."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from music_clip_common.files import unique_token
from music_clip_data.clips import clip_id
from music_clip_data.decode import load_rows
from music_clip_data.track import Track
from music_clip_data.writer import ATTRIBUTION_COLUMNS, captions_features, genres_features, write_split

from .caption_stage import Captioned
from .context import BuildContext
from .decode_stage import Decoded
from .roles import Assigned


@dataclass
class Written:
    shards: dict[str, dict[str, list[Path]]]  # config → split → Parquet files of this build
    features: dict[str, Any]  # config → datasets.Features


def base_rows(track: Track, status: dict) -> Iterator[dict]:
    """The row(s) of one kept track, as the decode worker made and cached them: the whole track, or one row per
    clip (same group, own id). Nothing is measured here."""
    rows = load_rows(status["cache_file"])
    metadata = {
        **track.metadata,
        "decode": json.loads(status["decode_info"]),
        "file_sha256": status["file_hash"],
    }
    for i, row in enumerate(rows):
        row_id, seconds = track.track_id, status["duration_s"]
        if row["span"] is not None:
            (start, end), row_id = row["span"], clip_id(track.track_id, i)
            seconds = round(end - start, 3)
            metadata["clip"] = {"track_id": track.track_id, "index": i, "start_s": start, "end_s": end,
                                "clips_in_track": len(rows)}  # fmt: skip
        yield {
            "track_id": row_id,
            "group_id": track.group_id,
            "source": track.source,
            "audio": {"bytes": row["flac"], "path": f"{row_id.replace('/', '__').replace(':', '_')}.flac"},
            "mel": row["mel"],
            "mel_length": int(row["mel"].shape[0]),
            "duration_s": seconds,
            "title": track.title,
            "artist": track.artist,
            "tags": list(track.tags),
            "lyrics": track.lyrics,
            **{column: str(track.metadata.get(column, "")) for column in ATTRIBUTION_COLUMNS},
            "metadata": json.dumps(metadata, ensure_ascii=False, default=str),
            **row["descriptors"],
        }


def write(ctx: BuildContext, decoded: Decoded, assigned: Assigned, captioned: Captioned) -> Written:
    fe, output = ctx.fe, ctx.output
    n_mels = int(fe.feature_size)
    features = {
        "captions": captions_features(n_mels),
        "genres": genres_features(n_mels, assigned.genre_names),
    }
    written = Written({"captions": {}, "genres": {}}, features)
    build_id = unique_token()  # new shard names: the previous build's shards stay readable until the card
    caption_rows: Iterator[dict] = (
        {**row, **r.columns} for r in captioned.rows for row in base_rows(r.track, r.status)
    )
    total = sum(decoded.n_rows(r.track) for r in captioned.rows)
    total += sum(decoded.n_rows(t) for t, _ in assigned.genre_set)
    with tqdm(total=total, desc="write parquet", unit="clip") as bar:
        written.shards["captions"]["train"] = write_split(
            caption_rows, features["captions"], output / "captions", "train", build_id, progress=bar.update
        )
        for split, wanted in (("train", False), ("test", True)):
            chosen = [
                ts
                for ts, flag in zip(assigned.genre_set, assigned.in_test, strict=True)
                if bool(flag) == wanted
            ]
            rows = (
                {**row, "genre": assigned.labels[t.track_id]} for t, s in chosen for row in base_rows(t, s)
            )
            written.shards["genres"][split] = write_split(
                rows, features["genres"], output / "genres", split, build_id, progress=bar.update
            )
    fe.save_pretrained(str(output / "feature_extractor"))
    return written
