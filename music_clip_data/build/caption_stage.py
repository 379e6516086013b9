"""Stage 4, caption: three sentences per captions track (an LLM or templates), cached so a re-run asks again only
for what is missing or failed."""

from __future__ import annotations

import argparse
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from music_clip_data.captioning import CaptionInput, CaptionResult, CaptionSettings, caption_many
from music_clip_data.track import Track

from .context import BuildContext


@dataclass
class CaptionRow:
    """A captions track with its caption: the columns `captions` adds to a track's row."""

    track: Track
    status: dict  # its decode status
    columns: dict[str, Any]  # caption, sentences, caption_source, caption_prompt, caption_model, ...


@dataclass
class Captioned:
    rows: list[CaptionRow] = field(default_factory=list)
    counts: Counter[str] = field(
        default_factory=lambda: Counter({"new": 0, "cached": 0, "failed": 0, "template": 0})
    )
    errors: list[str] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    settings: CaptionSettings | None = None


def caption_settings(args: argparse.Namespace, cache: Path) -> CaptionSettings:
    optional = {
        "temperature": args.llm_temperature,
        "concurrency": args.llm_concurrency,
        "max_lyrics_chars": args.max_lyrics_chars,
    }
    return CaptionSettings(
        base_url=args.llm_base_url,
        model=args.llm_model if args.llm_base_url else None,
        api_key_env=args.llm_api_key_env,
        prompt=args.prompt,
        cache_dir=cache,
        **{k: v for k, v in optional.items() if v is not None},
    )


def caption_tracks(
    tracks: list[Track], labels: dict[str, str | None], settings: CaptionSettings, measured: list[dict]
) -> list[CaptionResult]:
    """One caption per track; `measured` holds each track's audio descriptors (words in templates, facts for
    the LLM)."""
    inputs = []
    for t, descriptors in zip(tracks, measured, strict=True):
        label = labels.get(t.track_id)
        facts = {"title": t.title, "artist": t.artist, "genre": label, "tags": t.tags, **t.metadata}
        facts["descriptors"] = descriptors
        genres = list(t.tags) or ([label] if label else [])
        inputs.append(
            CaptionInput(
                t.track_id, t.lyrics, genres, t.template_sentences, facts, t.sentences_state_key_and_tempo
            )
        )
    return caption_many(inputs, settings)


def caption(
    ctx: BuildContext, caption_set: list[tuple[Track, dict]], labels: dict[str, str | None]
) -> Captioned:
    captioned = Captioned()
    if not caption_set:
        return captioned
    captioned.settings = caption_settings(ctx.args, ctx.cache / "captions")
    tracks, measured = [t for t, _ in caption_set], [s["descriptors"] for _, s in caption_set]
    results = caption_tracks(tracks, labels, captioned.settings, measured)
    for (track, status), result in zip(caption_set, results, strict=True):
        captioned.counts[result.status] += 1
        if result.status == "failed" or not result.sentences:
            captioned.errors.append(result.error or "no caption")
            captioned.skipped.append(
                {
                    "track_id": track.track_id,
                    "path": str(track.audio_path),
                    "reason": f"caption failed: {result.error}",
                    "raw": result.raw,
                }
            )
            continue
        columns = {
            "caption": " ".join(result.sentences),
            "sentences": list(result.sentences),
            "caption_source": result.caption_source,
            "caption_prompt": result.prompt or "",
            "caption_model": result.model or "",
            "caption_temperature": result.temperature,
            "caption_raw": result.raw or "",
        }
        captioned.rows.append(CaptionRow(track, status, columns))
    return captioned
