"""Source registry: name → a function that turns the build options into a `SourceRun`.

A source yields `Track`s; inputs it cannot use (missing files, bad manifest rows, pieces that failed to render)
go into `SourceRun.skipped` as `{"path" or "track_id", "reason"}` so the builder reports them, never silently.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from music_clip_common.audio_files import AUDIO_EXTENSIONS  # noqa: F401 (the one list, re-exported)
from music_clip_data.track import Track


@dataclass
class SourceOptions:
    audio_dir: Path | None = None
    metadata: Path | None = None
    size: str = "small"
    cache_dir: Path | None = None
    workers: int = 1
    seed: int = 0
    packages: list[str] | None = None  # debian: only these manifest packages
    debian_part: str = "all"  # debian: all | pretrain | heldout (held out of pretraining for evaluation)
    label_by_package: bool = False  # debian: the package is the genres label (soundtrack identification)


@dataclass
class SourceRun:
    name: str
    tracks: Iterable[Track]
    skipped: list[dict] = field(default_factory=list)  # filled while `tracks` is iterated
    handled: list[dict] = field(default_factory=list)  # inputs kept after a repair (e.g. re-decoded lyrics)
    licence: str = "the licence of your own audio"
    description: str = ""
    card_section: Callable[[], str] | None = None  # called after iteration (it may report counts)
    summary: Callable[[], dict] | None = None  # source-specific counts for build_summary.json


def _folder(options: SourceOptions) -> SourceRun:
    from music_clip_data.sources.folder import folder_source

    return folder_source(options)


def _manifest(options: SourceOptions) -> SourceRun:
    from music_clip_data.sources.manifest import manifest_source

    return manifest_source(options)


def _immich(options: SourceOptions) -> SourceRun:
    from music_clip_data.sources.immich import immich_source

    return immich_source(options)


def _debian(options: SourceOptions) -> SourceRun:
    from music_clip_data.sources.debian import debian_source

    return debian_source(options)


def _music21(options: SourceOptions) -> SourceRun:
    from music_clip_data.sources import music21_corpus as m21

    source = m21.Music21Source(
        size=options.size,
        cache_dir=options.cache_dir or Path("cache/music21"),
        workers=options.workers,
        seed=options.seed,
    )
    run = SourceRun(
        name="music21",
        tracks=[],
        licence=getattr(
            m21, "LICENCE", "music21 corpus (BSD-3-Clause) rendered with GM SoundFonts (see below)"
        ),
        description=f"real compositions from the music21 corpus rendered with FluidSynth ({options.size} build)",
    )

    def tracks() -> Iterator[Track]:
        yield from source
        # Pieces that failed to parse or render are known only once the build ran.
        run.skipped.extend({"track_id": f["path"], "reason": f["reason"]} for f in source.failures)

    run.tracks = tracks()
    run.card_section = source.card_section
    run.summary = source.summary
    return run


SOURCES: dict[str, Callable[[SourceOptions], SourceRun]] = {
    "music21": _music21,
    "immich": _immich,
    "folder": _folder,
    "manifest": _manifest,
    "debian": _debian,
}
DEFAULT_SOURCE = "music21"


def open_source(name: str, options: SourceOptions) -> SourceRun:
    if name not in SOURCES:
        raise ValueError(f"unknown source {name!r}; choose one of {sorted(SOURCES)}")
    return SOURCES[name](options)
