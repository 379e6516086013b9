"""The dataset build as a sequence of named stages, each a small function with a typed input and output:

    collect → decode → assign roles and split → caption → write → card → push

`build(args)` runs them all under the output folder's lock. An interrupted build re-run reuses the cached mels and
captions under the cache folder (default `OUTPUT/.cache/`).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import TypeVar

from music_clip_data.build.caption_stage import caption
from music_clip_data.build.collect import Collected, collect
from music_clip_data.build.context import BuildContext
from music_clip_data.build.decode_stage import Decoded, decode, keep_decoded
from music_clip_data.build.folder_lock import folder_lock
from music_clip_data.build.publish import card_info, push, write_card
from music_clip_data.build.roles import assign
from music_clip_data.build.summary import BuildSummary, summarize, write_reports
from music_clip_data.build.write_stage import write

T = TypeVar("T")


def timed(ctx: BuildContext, name: str, stage: Callable[[], T]) -> T:
    start = time.perf_counter()
    try:
        return stage()
    finally:
        ctx.timings[name] = ctx.timings.get(name, 0.0) + time.perf_counter() - start


def build(args: argparse.Namespace) -> BuildSummary:
    """Run the whole build under the output folder's lock; returns the summary also written to build_summary.json.

    A second builder on the same folder is refused (`FolderLocked`, naming the holder): two would otherwise
    write and clean up the same shards and cache."""
    with folder_lock(args.output):
        ctx = BuildContext.from_args(args)
        ctx.output.mkdir(parents=True, exist_ok=True)
        collected = timed(ctx, "collect", lambda: collect(ctx))
        statuses = timed(ctx, "decode", lambda: decode(ctx, collected.tracks))
        return finish_build(ctx, collected, keep_decoded(ctx, collected.tracks, statuses))


def finish_build(ctx: BuildContext, collected: Collected, decoded: Decoded) -> BuildSummary:
    """The stages after decoding: roles and split, captions, Parquet, reports, card, push."""
    start = time.perf_counter() - sum(ctx.timings.values())
    assigned = assign(ctx, decoded)
    captioned = timed(ctx, "captions", lambda: caption(ctx, assigned.caption_set, assigned.labels))
    written = timed(ctx, "write", lambda: write(ctx, decoded, assigned, captioned))
    ctx.timings["total"] = time.perf_counter() - start
    summary, skipped = summarize(ctx, collected, decoded, assigned, captioned)
    write_reports(ctx.output, skipped, summary)
    info = card_info(ctx, collected.run, summary, captioned.settings)
    info.labels_from_tags = assigned.labels_from_tags
    write_card(ctx, info, written)
    if ctx.args.push_to_hub and not refused_for_failed_captions(summary, ctx.args):
        push(ctx.output, ctx.args.push_to_hub)
    return summary


def refused_for_failed_captions(summary: BuildSummary, args: argparse.Namespace) -> bool:
    """Tracks whose caption failed after every retry are gaps: the build fails (and is not pushed) unless the
    user accepts them with --allow-failed-captions."""
    return bool(summary.captions["failed"]) and not args.allow_failed_captions
