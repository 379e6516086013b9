"""Folder-per-genre: `DIR/<genre>/<file>` → a track labelled by its folder; files at the top level are labelled
by their genre tags (thesis Table 2), or not at all.

Title, artist, album, date, comment, genre tags and lyrics come from the file's tags and sidecar lyrics
(`music_clip_common.tags`); the file name is the title only when the tags have none. Files without an audio
extension are reported as skipped, not silently ignored (hidden files such as `.DS_Store` and the `.lrc` /
`.txt` lyrics beside an audio file excepted).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from music_clip_common.audio_files import audio_files
from music_clip_common.tags import read_tags
from music_clip_data.sources import SourceOptions, SourceRun
from music_clip_data.track import Track, with_tags


def track_id_for(root: Path, path: Path) -> str:
    return path.relative_to(root).with_suffix("").as_posix()


def _walk(root: Path, skipped: list[dict], source: str) -> Iterator[Track]:
    for path in audio_files(root, skipped):
        rel = path.relative_to(root)
        track = Track(
            track_id=f"{source}:{track_id_for(root, path)}",
            audio_path=path,
            source=source,
            genre=rel.parts[0] if len(rel.parts) > 1 else None,
            metadata={"relative_path": rel.as_posix()},
        )
        yield with_tags(track, read_tags(path), fallback_title=path.stem.replace("_", " "))


def folder_source(options: SourceOptions) -> SourceRun:
    if options.audio_dir is None:
        raise ValueError("--source folder needs --audio-dir DIR (one sub-folder per genre)")
    root = Path(options.audio_dir)
    if not root.is_dir():
        raise ValueError(f"--audio-dir {root} is not a folder")
    run = SourceRun(
        name="folder", tracks=[], description=f"audio files under `{root.name}/`, one folder per genre"
    )
    run.tracks = _walk(root, run.skipped, "folder")
    return run
