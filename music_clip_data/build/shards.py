"""A build in K parts any job scheduler can run: `--shard I/K` collects the source, keeps the groups whose stable
hash falls in part I, decodes them (mels cached in the shared cache) and captions those that may serve `captions`
(answers cached), then records each track's decode status in `OUTPUT/.shards/`. `--finish K` checks that all K
records are there and were made with this command's settings, then runs today's stages over all groups: roles,
test split, captions (from the cache), Parquet, card. Shards share nothing but the output folder."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from filelock import FileLock

from music_clip_common.files import atomic_write_text
from music_clip_common.hashing import stable_bucket
from music_clip_data.track import Track

from .caption_stage import caption
from .collect import Collected, collect
from .context import BuildContext
from .decode_stage import decode, keep_decoded
from .folder_lock import folder_lock
from .roles import label_tracks
from .summary import BuildSummary

SHARDS_DIR = ".shards"
# The layout of a part's record: bumped when its statuses' keys change (format 2 added each clip's `spans`), so a part
# written by an older builder is refused with a clear message, not a KeyError halfway through --finish.
RECORD_FORMAT = 2


def shard_record(output: Path, index: int, count: int) -> Path:
    return Path(output) / SHARDS_DIR / f"shard-{index}-of-{count}.json"


def settings_fingerprint(ctx: BuildContext) -> dict:
    """What a part's content depends on: a part made with other values cannot join this build."""
    a = ctx.args
    return {
        "source": a.source,
        "size": a.size,
        "audio_dir": str(Path(a.audio_dir).resolve()) if a.audio_dir else None,
        "metadata": str(Path(a.metadata).resolve()) if a.metadata else None,
        "cache": str(ctx.cache.resolve()),
        "feature_extractor": json.loads(ctx.fe.to_json_string()),
        "decode": asdict(ctx.settings),
        "clips": asdict(a.clips) if a.clips else None,
        "seed": a.seed,
        "main_genres": list(a.main_genres),
        "captions": [a.llm_base_url, a.llm_model, a.prompt, a.llm_temperature, a.max_lyrics_chars],
    }


def collect_shared(ctx: BuildContext) -> Collected:
    """Collect under a lock on the source's cache: the first shard prepares it (music21 renders), the others
    wait, then read it."""
    ctx.cache.mkdir(parents=True, exist_ok=True)
    with FileLock(str(ctx.cache / f".{ctx.args.source}.collect.lock")):
        return collect(ctx)


def part_of(tracks: list[Track], index: int, count: int) -> list[Track]:
    return [t for t in tracks if stable_bucket(t.group_id, count) == index]


def build_shard(args: argparse.Namespace) -> dict:
    """Part I of K: decode and caption its groups; its record (written last) says the part is complete."""
    index, count = args.shard
    with folder_lock(args.output, f".build.shard-{index}-of-{count}.lock"):
        ctx = BuildContext.from_args(args)
        shard_record(ctx.output, index, count).unlink(
            missing_ok=True
        )  # complete again only when this run ends
        mine = part_of(collect_shared(ctx).tracks, index, count)
        statuses = decode(ctx, mine)
        decoded = keep_decoded(ctx, mine, statuses)
        labels, _, _ = label_tracks(decoded, args.main_genres)
        # Roles are drawn at --finish over all groups: caption every track that may serve captions (cached).
        caption(ctx, [(t, s) for t, s in decoded.kept if t.role != "genres"], labels)
        record = {
            "format": RECORD_FORMAT,
            "settings": settings_fingerprint(ctx),
            "statuses": dict(zip([t.track_id for t in mine], statuses)),
        }
        path = shard_record(ctx.output, index, count)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(record))
        return {"shard": f"{index}/{count}", "tracks": len(mine), "kept": len(decoded.kept)}


def read_parts(ctx: BuildContext, count: int) -> list[dict]:
    """The K part records, or a clear refusal naming the missing or mismatched parts."""
    mine, records, missing = settings_fingerprint(ctx), [], []
    for index in range(count):
        try:
            records.append(json.loads(shard_record(ctx.output, index, count).read_text(encoding="utf-8")))
        except (OSError, ValueError):
            missing.append(f"{index}/{count}")
    if missing:
        raise ValueError(
            f"--finish {count}: part(s) {', '.join(missing)} missing or unfinished in {ctx.output / SHARDS_DIR}; "
            "run the same command with --shard I/K for each (a re-run resumes from the cache)"
        )
    for index, record in enumerate(records):
        if record.get("format", 1) != RECORD_FORMAT:
            raise ValueError(
                f"--finish {count}: part {index}/{count} was written by an older builder (record format "
                f"{record.get('format', 1)}, this one reads {RECORD_FORMAT}); build it again with --shard"
            )
        differ = sorted(k for k in mine if record["settings"].get(k) != mine[k])
        if differ:
            raise ValueError(
                f"--finish {count}: part {index}/{count} was built with other settings ({', '.join(differ)}); "
                "build it again with this command's options and --shard"
            )
    return records


def finish_shards(args: argparse.Namespace) -> BuildSummary:
    """Join K complete parts: the stages after decoding, over all groups, exactly as an unsharded build."""
    from . import finish_build

    count = args.finish
    with folder_lock(args.output):
        ctx = BuildContext.from_args(args)
        records = read_parts(ctx, count)
        collected = collect_shared(ctx)
        statuses = []
        for track in collected.tracks:
            part = stable_bucket(track.group_id, count)
            status = records[part]["statuses"].get(track.track_id)
            if status is None:
                raise ValueError(
                    f"--finish {count}: part {part}/{count} has no record of {track.track_id}: the source changed "
                    "since the parts were built; build them again"
                )
            statuses.append(status)
        return finish_build(ctx, collected, keep_decoded(ctx, collected.tracks, statuses))
