"""Stage 1, collect: every track of the source, first of each `track_id`."""

from __future__ import annotations

from dataclasses import dataclass, field

from tqdm.auto import tqdm

from music_clip_data.sources import SourceRun, open_source
from music_clip_data.track import Track

from .context import BuildContext


@dataclass
class Collected:
    run: SourceRun
    tracks: list[Track]
    skipped: list[dict] = field(default_factory=list)  # later duplicates of a track_id, with the first's path


def collect(ctx: BuildContext) -> Collected:
    """All tracks of the source, first of each `track_id` (later duplicates are reported as skipped)."""
    run = open_source(ctx.args.source, ctx.source_options())
    collected = Collected(run, [])
    first_path: dict[str, str] = {}
    for track in tqdm(run.tracks, desc=f"collect tracks ({run.name})", unit="track"):
        if track.track_id in first_path:
            collected.skipped.append(
                {
                    "track_id": track.track_id,
                    "path": str(track.audio_path),
                    "reason": f"duplicate track_id (first: {first_path[track.track_id]})",
                }
            )
            continue
        first_path[track.track_id] = str(track.audio_path)
        collected.tracks.append(track)
    return collected
