"""The build's summary (`build_summary.json`, the card's counts, the printed report) and the local reports."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from music_clip_common.files import atomic_write_text

from .caption_stage import Captioned
from .collect import Collected
from .context import BuildContext
from .decode_stage import Decoded
from .roles import Assigned


@dataclass
class BuildSummary:
    source: str
    tracks_in: int
    kept: int  # rows (clips) in both configs
    captions_rows: int
    genres_rows: int
    clips: dict[str, Any] | None  # the clip settings and track counts, when tracks were cut into clips
    skipped: int
    skipped_by_reason: dict[str, int]
    handled: list[dict]
    no_main_genre: int
    captions: dict[str, int]  # new / cached / failed / template
    caption_failures_by_reason: dict[str, int]
    mel_cache: dict[str, int]  # hits / computed
    clips_per_class_and_split: dict[str, dict[str, int]]  # split → genre → rows
    genre_names: list[str]
    decode_clips_per_s: float | None
    num_proc: int
    timings_s: dict[str, float]
    decode_settings: dict[str, Any]
    seed: int
    source_summary: dict | None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False)


def reason_kind(reason: str) -> str:
    return reason.split(":", 1)[0].split("(", 1)[0].strip()


def summarize(
    ctx: BuildContext, collected: Collected, decoded: Decoded, assigned: Assigned, captioned: Captioned
) -> tuple[BuildSummary, list[dict]]:
    """The summary and every skipped input (source, collect, decode, roles and caption skips, in that order)."""
    args, run, n_rows = ctx.args, collected.run, decoded.n_rows
    skipped = run.skipped + collected.skipped + decoded.skipped + assigned.skipped + captioned.skipped
    per_split: dict[str, Counter] = defaultdict(Counter)
    for (track, _), flag in zip(assigned.genre_set, assigned.in_test, strict=True):
        per_split["test" if flag else "train"][assigned.labels[track.track_id]] += n_rows(track)
    captions_rows = sum(n_rows(r.track) for r in captioned.rows)
    genres_rows = sum(n_rows(t) for t, _ in assigned.genre_set)
    clips = None
    if args.clips:
        n_caption, n_genre = len(captioned.rows), len(assigned.genre_set)
        clips = {**asdict(args.clips), "tracks": n_caption + n_genre, "captions_tracks": n_caption,
                 "genres_tracks": n_genre}  # fmt: skip
    decode_s = ctx.timings.get("decode", 0.0)
    summary = BuildSummary(
        source=args.source,
        tracks_in=len(collected.tracks) + len(collected.skipped) + len(run.skipped),
        kept=captions_rows + genres_rows,
        captions_rows=captions_rows,
        genres_rows=genres_rows,
        clips=clips,
        skipped=len(skipped),
        skipped_by_reason=dict(Counter(reason_kind(s["reason"]) for s in skipped).most_common()),
        handled=run.handled,
        no_main_genre=assigned.no_main_genre,
        captions=dict(captioned.counts),
        caption_failures_by_reason=dict(Counter(reason_kind(e) for e in captioned.errors).most_common()),
        mel_cache={
            "hits": sum(s["from_cache"] for _, s in decoded.kept),
            "computed": sum(not s["from_cache"] for _, s in decoded.kept),
        },
        clips_per_class_and_split={"train": dict(per_split["train"]), "test": dict(per_split["test"])},
        genre_names=assigned.genre_names,
        decode_clips_per_s=round(len(collected.tracks) / decode_s, 2) if decode_s > 0 else None,
        num_proc=args.num_proc,
        timings_s={k: round(v, 2) for k, v in ctx.timings.items()},
        decode_settings=asdict(ctx.settings),
        seed=args.seed,
        source_summary=run.summary() if run.summary else None,
    )
    return summary, skipped


def write_reports(output: Path, skipped: list[dict], summary: BuildSummary) -> None:
    lines = [json.dumps(entry, ensure_ascii=False, default=str) + "\n" for entry in skipped]
    atomic_write_text(output / "skipped.jsonl", "".join(lines))
    atomic_write_text(output / "build_summary.json", summary.to_json())


def format_summary(summary: BuildSummary) -> str:
    s = summary
    lines = [
        f"tracks in {s.tracks_in}, kept {s.kept} (captions {s.captions_rows}, genres {s.genres_rows}), "
        f"skipped {s.skipped}",
    ]
    lines += [f"  skipped: {reason}: {n}" for reason, n in s.skipped_by_reason.items()]
    if s.handled:
        lines.append(f"  handled (kept after repair): {len(s.handled)}")
    lines.append("captions: " + ", ".join(f"{k} {v}" for k, v in s.captions.items()))
    lines += [f"  caption failed: {reason}: {n}" for reason, n in s.caption_failures_by_reason.items()]
    lines.append(f"mels: {s.mel_cache['computed']} computed, {s.mel_cache['hits']} from cache")
    if s.clips:
        lines.append(f"clips: {s.kept} rows from {s.clips['tracks']} tracks")
    for split in ("train", "test"):
        counts = s.clips_per_class_and_split[split]
        lines.append(f"genres/{split}: " + ", ".join(f"{g} {counts.get(g, 0)}" for g in s.genre_names))
    lines.append(f"time: {s.timings_s}")
    return "\n".join(lines)
