"""`--source debian`: real produced game music from Debian main packages (DFSG-free: GPL, CC-BY, CC-BY-SA...).

The packages, their versions, checksums, music files, licences and attributions are listed in
`debian_manifest.json`; docs/real-music-sources.md is the survey behind it. `--size small|quick|full` picks
packages; `--debian-part pretrain|heldout` keeps the packages used for pretraining or those held out for the
real-music evaluation; `--label-by-package` makes the package the genres config's label (soundtrack
identification). Every track carries `package`, `license` and `attribution` (CC-BY requires it). What is left
out (MIDI renders, sound effects and stingers, near-duplicates) is reported in skipped.jsonl with its reason.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from music_clip_common.tags import read_tags
from music_clip_data.sources import SourceOptions, SourceRun
from music_clip_data.sources.debian_filters import (
    exclusion_reason,
    fingerprint,
    midi_render_stems,
    near_duplicates,
    probe_seconds,
)
from music_clip_data.sources.debian_packages import (
    PackageEntry,
    default_cache,
    fetch_deb,
    load_manifest,
    music_files,
    select_packages,
    unpack,
)
from music_clip_data.track import Track

LICENCE = "per track: see the `license` and `attribution` columns (Debian main: DFSG-free licences)"
TRACK_TAGS = ("soundtrack", "game music", "instrumental")


def read_file_tags(path: Path) -> dict[str, str]:
    """Title, artist, album and the first genre of one file, through the shared tag reader."""
    tags = read_tags(path)
    values = {
        "title": tags.title,
        "artist": tags.artist,
        "album": tags.album,
        "genre": next(iter(tags.genre), ""),
    }
    return {key: value for key, value in values.items() if value}


def title_from_name(relative: str) -> str:
    stem = PurePosixPath(relative).stem
    return " ".join(stem.replace("_", " ").replace("-", " ").split()).strip() or stem


def template_sentences(entry: PackageEntry, title: str, facts: dict[str, str]) -> list[str]:
    by = f" by {facts['artist']}" if facts.get("artist") else ""
    return [
        f'"{title}" is instrumental music{by} from the soundtrack of the free game {entry.game}.',
        f"{entry.game}: {entry.description.rstrip('.')}.",
        # The licence is a column, not a description: the last sentence says what the audio does (the
        # measured descriptors are appended to it).
        f"A {facts.get('genre', 'game soundtrack').lower()} piece.",
    ]


def make_track(entry: PackageEntry, version: str, relative: str, path: Path, label: bool) -> Track:
    tags = read_file_tags(path)
    facts = {**entry.file_facts(relative), **{k: v for k, v in tags.items() if k in ("artist", "genre")}}
    title = tags.get("title") or title_from_name(relative)
    return Track(
        track_id=f"debian:{entry.name}/{relative}",
        audio_path=path,
        source="debian",
        title=title,
        artist=tags.get("artist", ""),
        tags=[t for t in (tags.get("genre"), *TRACK_TAGS) if t],
        genre=entry.name if label else None,
        metadata={
            "package": entry.name,
            "package_version": version,
            "package_path": relative,
            "license": facts["license"],
            "attribution": facts["attribution"],
            "game": entry.game,
            **({"album": tags["album"]} if tags.get("album") else {}),
        },
        template_sentences=template_sentences(entry, title, {**facts, "artist": tags.get("artist", "")}),
        sentences_state_key_and_tempo=False,
    )


class DebianSource:
    """Fetch, unpack and filter the chosen packages; `tracks()` yields what is kept, `skipped` the rest."""

    def __init__(self, options: SourceOptions) -> None:
        self.entries = select_packages(load_manifest(), options.size, options.debian_part, options.packages)
        if not self.entries:
            raise ValueError(f"no debian packages for size {options.size} part {options.debian_part}")
        self.label = options.label_by_package
        self.cache = default_cache()
        self.skipped: list[dict] = []
        self.fetched: list[dict] = []
        self.kept: Counter[str] = Counter()
        self.seconds: Counter[str] = Counter()

    def candidates(self) -> Iterator[tuple[PackageEntry, str, str, Path, float]]:
        """Every music file that passes the per-file rules: (entry, version, path in package, file, seconds)."""
        for entry in self.entries:
            deb, fact = fetch_deb(entry, self.cache)
            self.fetched.append(fact)
            root = unpack(deb, self.cache, entry.archives)
            files = music_files(entry, root)
            midi = midi_render_stems([p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()])
            for relative, path in files:
                seconds = probe_seconds(path)
                reason = exclusion_reason(relative, seconds, midi)
                if reason:
                    self.skipped.append({"path": f"{entry.name}:{relative}", "reason": reason})
                    continue
                yield entry, fact["version"], relative, path, float(seconds or 0.0)

    def tracks(self) -> Iterator[Track]:
        found = list(self.candidates())
        prints = {f"{e.name}:{rel}": fingerprint(path) for e, _, rel, path, _ in found}
        duplicates = near_duplicates(prints)
        for entry, version, relative, path, seconds in found:
            key = f"{entry.name}:{relative}"
            if key in duplicates:
                other, score = duplicates[key]
                self.skipped.append(
                    {"path": key, "reason": f"near-duplicate of {other} (chromaprint similarity {score:.2f})"}
                )
                continue
            self.kept[entry.name] += 1
            self.seconds[entry.name] += seconds
            yield make_track(entry, version, relative, path, self.label)

    def summary(self) -> dict[str, Any]:
        return {
            "packages": self.fetched,
            "tracks_per_package": dict(self.kept),
            "hours_per_package": {k: round(v / 3600, 3) for k, v in self.seconds.items()},
            "newer_than_manifest": [f for f in self.fetched if "manifest_version" in f],
        }

    def card_section(self) -> str:
        rows = [
            f"| {e.name} | {next((f['version'] for f in self.fetched if f['package'] == e.name), '-')} | "
            f"{self.kept[e.name]} | {self.seconds[e.name] / 3600:.2f} | {e.license} | {e.attribution} |"
            for e in self.entries
        ]
        newer = [
            f"- {f['package']}: manifest {f['manifest_version']}, used {f['version']} (sha256 {f['sha256']})"
            for f in self.fetched
            if "manifest_version" in f
        ]
        return "\n".join(
            [
                "### Debian packages",
                "",
                "| package | version | tracks | hours | licence | attribution |",
                "|---|---|---|---|---|---|",
                *rows,
                "",
                *(
                    ["Versions newer than the manifest (the mirror keeps only current ones):", *newer, ""]
                    if newer
                    else []
                ),
                "Each row's `license` and `attribution` columns name its licence and composer / copyright holder.",
            ]
        )


def debian_source(options: SourceOptions) -> SourceRun:
    source = DebianSource(options)
    names = ", ".join(e.name for e in source.entries)
    run = SourceRun(
        name="debian",
        tracks=[],
        licence=LICENCE,
        description=f"real game music from Debian main packages ({options.size} build: {names})",
    )

    def tracks() -> Iterator[Track]:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            yield from source.tracks()
        run.skipped.extend(source.skipped)

    run.tracks = tracks()
    run.card_section = source.card_section
    run.summary = source.summary
    return run
