"""The one record every source yields and the builder consumes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from music_clip_common.tags import TrackTags

Role = Literal["captions", "genres"]


@dataclass
class Track:
    """One piece of music before decoding. Sources fill what they know; the builder does the rest."""

    track_id: str  # unique across the whole build (both configs)
    audio_path: Path  # a file the builder decodes (any format FFmpeg reads)
    group_id: str = ""  # piece / work / tune family: splits never cut a group (defaults to track_id)
    source: str = ""
    title: str = ""
    artist: str = ""
    lyrics: str = ""
    tags: list[str] = field(default_factory=list)  # raw genre tags, mapped to a main genre by the builder
    genre: str | None = None  # a label given directly (folder name, style class); wins over tags
    role: Role | None = None  # which config the track belongs to; None lets the builder decide
    metadata: dict[str, Any] = field(default_factory=dict)  # source extras, stored as JSON (render params...)
    # Three caption sentences from real metadata, if the source has them, and whether they already state the
    # key and tempo (a score or a generation prompt knows them; a shipped recording does not).
    template_sentences: list[str] | None = None
    sentences_state_key_and_tempo: bool = True

    def __post_init__(self) -> None:
        self.audio_path = Path(self.audio_path)
        if not self.group_id:
            self.group_id = self.track_id


def with_tags(track: Track, tags: TrackTags, fallback_title: str = "") -> Track:
    """`track` with its file's tags filling what the source left empty (a source's own values win): title,
    artist, lyrics, genre tags (raw, for the builder's Table 2 mapping), and album / date / comment, where the
    lyrics came from and why a tag was ignored in `metadata`. `fallback_title` (a file name) when neither has a
    title."""
    track.title = track.title or tags.title or fallback_title
    track.artist = track.artist or tags.artist
    if not track.lyrics and tags.lyrics:
        track.lyrics = tags.lyrics
        track.metadata["lyrics_source"] = tags.lyrics_source
    track.tags = track.tags or list(tags.genre)
    for name, value in tags.extras().items():
        track.metadata.setdefault(name, value)
    if tags.notes:
        track.metadata["tag_notes"] = list(tags.notes)
    return track
