"""One tag reader for every layer (builder sources, `music-clip index`): mutagen, torch-free.

`read_tags(path)` → `TrackTags`: title, artist, album, genre (a list), date, comment and lyrics from ID3 (MP3,
WAV, AIFF), Vorbis comments (FLAC, Ogg Vorbis, Opus), MP4 atoms (M4A) and ASF (WMA). Lyrics come from ID3
`USLT`, Vorbis `LYRICS` / `UNSYNCEDLYRICS`, MP4 `©lyr` or ASF `WM/Lyrics`; when the tags hold none, from a
sidecar `NAME.lrc` (timestamps and `[ar:...]` header lines stripped) or `NAME.txt` beside the file.

Tags are user data and often junk: a value that is binary, past `MAX_CHARS`, mostly control characters or
undecodable is ignored with a note in `TrackTags.notes`; UTF-8 that was stored as Latin-1 ("BeyoncÃ©") is
repaired with a note. Nothing here raises for a file: one mutagen cannot parse gives empty tags and a note
(whether the audio decodes is the audio path's business, not the tag reader's).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Longest value kept per field (characters): past it a tag is junk (an image pasted into a comment, a whole
# log file), not text. Lyrics of a long song are about 5,000 characters.
MAX_CHARS = {"lyrics": 20_000, "comment": 2_000}
MAX_CHARS_DEFAULT = 500
MAX_SIDECAR_BYTES = 200_000
SIDECAR_SUFFIXES = (".lrc", ".txt")  # lyrics beside the audio file, in this order of preference
# A value with more than this share of control / replacement characters is not text.
MAX_JUNK_SHARE = 0.1

# Each field's keys, per tag format: ID3 frame ids (matched before the first ':'), Vorbis comment names
# (case-insensitive), MP4 atoms and ASF attributes. The first key that gives a usable value wins.
FIELD_KEYS: dict[str, tuple[str, ...]] = {
    "title": ("TIT2", "title", "©nam", "Title"),
    "artist": ("TPE1", "artist", "©ART", "Author", "TPE2", "albumartist", "aART", "WM/AlbumArtist"),
    "album": ("TALB", "album", "©alb", "WM/AlbumTitle"),
    "genre": ("TCON", "genre", "©gen", "WM/Genre"),
    "date": ("TDRC", "TYER", "date", "year", "©day", "WM/Year"),
    "comment": ("COMM", "comment", "description", "©cmt", "Description"),
    "lyrics": ("USLT", "lyrics", "unsyncedlyrics", "unsynced lyrics", "©lyr", "WM/Lyrics"),
}
_LRC_TIME = re.compile(r"\[\d{1,3}:\d{1,2}(?:[.:]\d{1,3})?\]|<\d{1,3}:\d{1,2}(?:[.:]\d{1,3})?>")
_LRC_HEADER = re.compile(r"^\s*\[[a-zA-Z#]+:[^\]]*\]\s*$")  # [ar:...], [ti:...], [length:...], [offset:...]
_GENRE_SPLIT = re.compile(r"\s*[;\x00]\s*")


@dataclass
class TrackTags:
    """What a file's tags say; empty strings / lists where they say nothing usable."""

    title: str = ""
    artist: str = ""
    album: str = ""
    genre: list[str] = field(default_factory=list)  # raw genre tags, in file order, duplicates removed
    date: str = ""
    comment: str = ""
    lyrics: str = ""
    lyrics_source: str = ""  # "tags", ".lrc" or ".txt" ("" when there are no lyrics)
    notes: list[str] = field(default_factory=list)  # why a tag was ignored or repaired

    def extras(self) -> dict[str, str]:
        """Album, date and comment when present: the facts a `Track`'s metadata and the captions add."""
        return {k: v for k, v in (("album", self.album), ("date", self.date), ("comment", self.comment)) if v}


def read_tags(path: str | Path) -> TrackTags:
    """The tags of one audio file plus sidecar lyrics; never raises (see the module docstring)."""
    path = Path(path)
    tags = TrackTags()
    for name, values in _raw_fields(path, tags.notes).items():
        texts = [t for t in (_clean(name, v, tags.notes) for v in values) if t]
        if name == "genre":
            split = (g for t in texts for g in _GENRE_SPLIT.split(t))
            tags.genre = list(dict.fromkeys(g.strip() for g in split if g.strip()))
        elif texts:
            setattr(tags, name, texts[0])
    if tags.lyrics:
        tags.lyrics_source = "tags"
    else:
        tags.lyrics, tags.lyrics_source = _sidecar_lyrics(path, tags.notes)
    return tags


def _raw_fields(path: Path, notes: list[str]) -> dict[str, list[Any]]:
    """Field name → the raw values of the first key holding any, from mutagen's view of the file."""
    try:
        import mutagen

        audio = mutagen.File(path)
    except Exception as err:  # noqa: BLE001 - any parse failure of a user's file means "no tags"
        notes.append(f"tags unreadable ({type(err).__name__}: {str(err)[:120]}); no tags used")
        return {}
    if audio is None or not audio.tags:
        return {}
    by_key: dict[str, list[Any]] = {}
    for key, value in audio.tags.items():
        frame_id = key.split(":", 1)[0] if hasattr(value, "FrameID") else key
        by_key.setdefault(frame_id.lower(), []).extend(value if isinstance(value, list) else [value])
    found = {}
    for name, keys in FIELD_KEYS.items():
        for key in keys:
            if by_key.get(key.lower()):
                found[name] = by_key[key.lower()]
                break
    return found


def _as_text(value: Any) -> str | bytes | None:
    """A tag value as text; bytes for binary values; None for what is not a text value at all."""
    if hasattr(value, "genres"):  # ID3 TCON: resolves ID3v1 numeric genres such as "(17)"
        return "\x00".join(value.genres)
    if hasattr(value, "FrameID"):  # other ID3 frames: `text` is a list (text frames, COMM) or a str (USLT)
        text = getattr(value, "text", None)
        if text is None:
            return None
        return "\x00".join(map(str, text)) if isinstance(text, list) else str(text)
    if isinstance(value, bytes | bytearray):  # MP4FreeForm, ASF byte arrays
        return bytes(value)
    inner = getattr(value, "value", value)  # ASF attributes wrap their value
    return bytes(inner) if isinstance(inner, bytes | bytearray) else str(inner)


def _clean(name: str, value: Any, notes: list[str]) -> str:
    """One usable text value of field `name`, or "" with a note saying why it was ignored."""
    text = _as_text(value)
    if text is None:
        return ""
    if isinstance(text, bytes):
        notes.append(f"{name}: binary value ({len(text)} bytes) ignored")
        return ""
    limit = MAX_CHARS.get(name, MAX_CHARS_DEFAULT)
    if len(text) > limit:
        notes.append(f"{name}: {len(text)} characters (over {limit}) ignored")
        return ""
    repaired = _undo_mojibake(text)
    if repaired != text:
        notes.append(f"{name}: UTF-8 stored as Latin-1, repaired")
        text = repaired
    keep = "\n\t" if name in ("lyrics", "comment") else "\x00"  # NUL separates ID3 multi-values
    junk = sum(_is_junk(ch, keep) for ch in text)
    if junk > MAX_JUNK_SHARE * len(text):
        notes.append(f"{name}: {junk} of {len(text)} characters are control or undecodable: ignored")
        return ""
    if junk:
        notes.append(f"{name}: {junk} control character(s) removed")
        text = "".join(ch for ch in text if not _is_junk(ch, keep))
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text.strip() if name in ("lyrics", "comment") else " ".join(text.split())


def _is_junk(ch: str, keep: str) -> bool:
    return ch not in keep and (ch == "\ufffd" or unicodedata.category(ch) in ("Cc", "Cs", "Co", "Cn"))


def _undo_mojibake(text: str) -> str:
    """UTF-8 bytes that a tagger decoded as Latin-1 / Windows-1252 ("Ã©" for "é"), decoded again; the text
    itself when that does not give valid UTF-8 (real Latin-1 text such as "café" stays as it is)."""
    if text.isascii():
        return text
    for codec in ("cp1252", "latin-1"):
        try:
            fixed = text.encode(codec).decode("utf-8")
        except UnicodeError:
            continue
        return fixed if fixed != text else text
    return text


def _sidecar_lyrics(path: Path, notes: list[str]) -> tuple[str, str]:
    """Lyrics from `NAME.lrc` (timestamps stripped) or `NAME.txt` beside the audio file."""
    for suffix in SIDECAR_SUFFIXES:
        sidecar = path.with_suffix(suffix)
        try:
            if not sidecar.is_file():
                continue
            if sidecar.stat().st_size > MAX_SIDECAR_BYTES:
                notes.append(f"{sidecar.name}: over {MAX_SIDECAR_BYTES} bytes, ignored")
                continue
            raw = sidecar.read_bytes()
        except OSError as err:
            notes.append(f"{sidecar.name}: unreadable ({err.strerror or err}), ignored")
            continue
        text = _decode_sidecar(raw, sidecar.name, notes)
        if suffix == ".lrc":
            text = strip_lrc(text)
        text = _clean("lyrics", text, notes)
        if text:
            return text, suffix
    return "", ""


def _decode_sidecar(raw: bytes, name: str, notes: list[str]) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        notes.append(f"{name}: not UTF-8, read as Windows-1252")
        return raw.decode("cp1252", errors="replace")


def strip_lrc(text: str) -> str:
    """LRC → plain lyrics: header lines (`[ar:...]`) dropped, line and word timestamps removed."""
    lines = []
    for line in text.splitlines():
        if _LRC_HEADER.match(line):
            continue
        lines.append(_LRC_TIME.sub("", line).strip())
    return "\n".join(lines).strip()
