"""Clips from whole tracks: `--clip-seconds S [--hop-seconds H] [--max-clips-per-track M]`.

Music-IR datasets are clip-level (GTZAN: 30 s clips, MTG-Jamendo: 30 s chunks). A track becomes clips of S
seconds starting every H seconds (H = S: back to back); a tail shorter than S is dropped, and a track shorter
than S stays one clip of its whole length. With M, the M clips are spread evenly over the track. Every clip
keeps its track's `group_id` (a manifest's own coarser group included), so the builder's grouped splits never
put clips of one track on both sides. Each clip's FLAC, log-mel and descriptors are made in the decode worker on
the waveform it decoded (`decode.clip_row`) and cached with the decode: a row's `mel` is always the feature
extractor applied to its `audio`, and a re-run reuses every clip.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ClipSettings:
    seconds: float
    hop_seconds: float | None = None  # None: back to back (hop = seconds)
    max_per_track: int | None = None  # None: every clip that fits

    def __post_init__(self) -> None:
        if self.seconds <= 0:
            raise ValueError(f"--clip-seconds must be > 0, got {self.seconds}")
        if self.hop_seconds is not None and self.hop_seconds <= 0:
            raise ValueError(f"--hop-seconds must be > 0, got {self.hop_seconds}")
        if self.max_per_track is not None and self.max_per_track < 1:
            raise ValueError(f"--max-clips-per-track must be >= 1, got {self.max_per_track}")

    @property
    def hop(self) -> float:
        return self.hop_seconds or self.seconds


def clip_spans(duration_s: float, settings: ClipSettings) -> list[tuple[float, float]]:
    """(start, end) seconds of a track's clips, in time order."""
    if duration_s <= settings.seconds:
        return [(0.0, duration_s)]
    count = int(np.floor((duration_s - settings.seconds) / settings.hop + 1e-9)) + 1
    starts = np.arange(count) * settings.hop
    if settings.max_per_track and count > settings.max_per_track:
        starts = starts[np.linspace(0, count - 1, settings.max_per_track).round().astype(int)]
    return [(round(float(s), 3), round(float(s) + settings.seconds, 3)) for s in starts]


def span_samples(span: tuple[float, float], sampling_rate: int) -> slice:
    """The samples of a (start, end) span in seconds."""
    return slice(int(round(span[0] * sampling_rate)), int(round(span[1] * sampling_rate)))


def clip_id(track_id: str, index: int) -> str:
    return f"{track_id}#clip{index:03d}"
