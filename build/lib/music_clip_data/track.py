"""The one record every source yields and the builder consumes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

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
    # Three caption sentences from real metadata, if the source has them.
    template_sentences: list[str] | None = None

    def __post_init__(self) -> None:
        self.audio_path = Path(self.audio_path)
        if not self.group_id:
            self.group_id = self.track_id
