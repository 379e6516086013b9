"""Audio-file discovery: ONE list of extensions and one folder walk, for the builder's folder source, the library
indexer and the OOD evaluation."""

from __future__ import annotations

import glob
from pathlib import Path

from music_clip_common.tags import SIDECAR_SUFFIXES

# What FFmpeg decodes and people keep music in; other files in a music folder (READMEs, covers) are not audio.
AUDIO_EXTENSIONS = frozenset(
    {
        ".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".aif", ".aiff", ".wma", ".webm", ".mka",
        ".mp4",
    }
)  # fmt: skip


def is_audio_file(path: Path) -> bool:
    return Path(path).suffix.lower() in AUDIO_EXTENSIONS


def audio_files(root: Path, skipped: list[dict]) -> list[Path]:
    """Every file under `root` with an audio extension (hidden files and folders left out), sorted; each other
    file goes into `skipped` as `{"path", "reason"}`, so nothing is left out silently, except a lyrics sidecar
    (`NAME.lrc` / `NAME.txt` beside `NAME.<audio>`), which the tag reader reads with its audio file."""
    root = Path(root)
    files = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if path.is_dir() or any(part.startswith(".") for part in rel.parts):
            continue
        if is_audio_file(path):
            files.append(path)
        elif not _is_lyrics_sidecar(path):
            skipped.append(
                {"path": str(path), "reason": f"not an audio file extension ({path.suffix or 'none'})"}
            )
    return files


def _is_lyrics_sidecar(path: Path) -> bool:
    if path.suffix.lower() not in SIDECAR_SUFFIXES:
        return False
    return any(is_audio_file(p) and p.is_file() for p in path.parent.glob(f"{glob.escape(path.stem)}.*"))
