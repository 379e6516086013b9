"""CSV or JSONL manifest: one row per track with `path` (required) and optional `track_id`, `title`, `artist`,
`lyrics`, `tags` (genre tags: a JSON list, or a string separated by `;`, `|` or `,`), `genre` (a direct label),
`group_id`, `role` (`captions` / `genres`).

Relative paths resolve against `--audio-dir` when given, else against the manifest's folder. Rows with no path,
a missing file or unreadable JSON are skipped with their reason; text that is not UTF-8 is decoded as
Windows-1252 (which never fails) and reported as handled.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from music_clip_data.sources import SourceOptions, SourceRun
from music_clip_data.track import Track

TEXT_FIELDS = ("track_id", "title", "artist", "lyrics", "genre", "group_id", "role")


def _repair(text: str) -> tuple[str, bool]:
    """Undo `surrogateescape` for bytes that were not UTF-8: decode them as cp1252 (latin-1 as a fallback)."""
    if not any("\udc80" <= ch <= "\udcff" for ch in text):
        return text, False
    raw = text.encode("utf-8", "surrogateescape")
    try:
        return raw.decode("cp1252"), True
    except UnicodeDecodeError:
        return raw.decode("latin-1"), True


def parse_tags(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    text = str(value).strip()
    if text.startswith("["):
        try:
            return parse_tags(json.loads(text))
        except json.JSONDecodeError:
            text = text.strip("[]")
    for sep in (";", "|"):
        if sep in text:
            return [t.strip() for t in text.split(sep) if t.strip()]
    return [t.strip() for t in text.split(",") if t.strip()]


def _rows(path: Path, skipped: list[dict]) -> Iterator[tuple[int, dict[str, Any]]]:
    # Excel's "CSV UTF-8" starts with a byte-order mark, which would glue itself to the first column's name.
    text = path.read_bytes().decode("utf-8", "surrogateescape").removeprefix("\ufeff")
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        for line_no, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                skipped.append(
                    {"path": f"{path}:{line_no}", "reason": f"manifest row is not valid JSON: {err}"}
                )
                continue
            if not isinstance(row, dict):
                skipped.append({"path": f"{path}:{line_no}", "reason": "manifest row is not a JSON object"})
                continue
            yield line_no, row
        return
    # A field cannot be longer than the file, which is already in memory: lift csv's 131,072-character cap
    # (long lyrics) up to that, never lower.
    csv.field_size_limit(max(csv.field_size_limit(), len(text) + 1))
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        if reader.fieldnames is None or "path" not in [f.strip() for f in reader.fieldnames]:
            raise ValueError(f"manifest {path} has no `path` column (columns: {reader.fieldnames})")
        for row in reader:
            yield reader.line_num, {(k or "").strip(): v for k, v in row.items()}
    except csv.Error as err:  # e.g. a NUL byte: the rest of the file cannot be trusted
        raise ValueError(f"manifest {path} line {reader.line_num}: not readable as CSV: {err}") from None


def _tracks(options: SourceOptions, run: SourceRun) -> Iterator[Track]:
    manifest = Path(options.metadata)  # type: ignore[arg-type]
    base = Path(options.audio_dir) if options.audio_dir else manifest.parent
    for line_no, row in _rows(manifest, run.skipped):
        where = f"{manifest}:{line_no}"
        values: dict[str, str] = {}
        for key in TEXT_FIELDS + ("path",):
            value = row.get(key)
            value = "" if value is None else str(value)
            value, repaired = _repair(value)
            if repaired:
                run.handled.append(
                    {"path": where, "field": key, "note": "not UTF-8: decoded as Windows-1252"}
                )
            values[key] = value.strip() if key != "lyrics" else value
        if not values["path"]:
            run.skipped.append({"path": where, "reason": "manifest row has no `path`"})
            continue
        audio_path = Path(values["path"])
        audio_path = audio_path if audio_path.is_absolute() else base / audio_path
        if not audio_path.is_file():
            run.skipped.append(
                {"path": str(audio_path), "reason": f"file not found (manifest row {line_no})"}
            )
            continue
        role = values["role"] or None
        if role not in (None, "captions", "genres"):
            run.skipped.append({"path": where, "reason": f"unknown role {role!r} (use captions or genres)"})
            continue
        tags_value = row.get("tags")
        tags = [_repair(t)[0] for t in parse_tags(tags_value)]
        extras = {
            k: v for k, v in row.items() if k not in TEXT_FIELDS + ("path", "tags") and v not in (None, "")
        }
        yield Track(
            track_id=f"manifest:{values['track_id'] or values['path']}",
            audio_path=audio_path,
            group_id=f"manifest:{values['group_id']}" if values["group_id"] else "",
            source="manifest",
            title=values["title"],
            artist=values["artist"],
            lyrics=values["lyrics"],
            tags=tags,
            genre=values["genre"] or None,
            role=role,  # type: ignore[arg-type]
            metadata={"manifest_row": line_no, **{k: _repair(str(v))[0] for k, v in extras.items()}},
        )


def manifest_source(options: SourceOptions) -> SourceRun:
    if options.metadata is None:
        raise ValueError("--source manifest needs --metadata tracks.csv|tracks.jsonl")
    if not Path(options.metadata).is_file():
        raise ValueError(f"--metadata {options.metadata} does not exist")
    run = SourceRun(
        name="manifest", tracks=[], description=f"tracks listed in `{Path(options.metadata).name}`"
    )
    run.tracks = _tracks(options, run)
    return run
