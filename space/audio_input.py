"""An uploaded file (audio or the audio track of a video) → the model's waveform, with failures worded for a visitor."""

from __future__ import annotations

from typing import Any

import numpy as np


class UploadError(ValueError):
    """A problem with the visitor's file, worded for the visitor."""


def decode_upload(path: str | None, feature_extractor: Any, max_seconds: float) -> tuple[np.ndarray, str]:
    """Return `(waveform, note)`: mono float32 at the extractor's rate, and a note when the clip was cut.

    The served model folder's own audio path does the work (`feature_extractor.load_audio`, from
    `audio_music_clip.py` next to the model's code; the Space folder does not ship the repository): the same
    decode, downmix, resampler and acceptance rules as the dataset builder and the processor. Only the first
    `max_seconds` are decoded, in bounded chunks, so a long or high-rate upload costs what a short one does.
    """
    if not path:
        raise UploadError("Upload or record a clip first.")
    load = getattr(feature_extractor, "load_audio", None)
    if load is None:  # a model folder saved before audio_music_clip existed
        raise UploadError(
            "The served model was saved by an older MusicCLIP: save it again to analyse uploads."
        )
    try:
        loaded = load(path, max_seconds=max_seconds)
    except ValueError as err:  # AudioRejected: its message is written for the visitor
        raise UploadError(str(err)) from None
    note = ""
    duration = loaded.info.get("native_duration_s")
    if loaded.info.get("truncated") and duration:
        note = f"Analysed the first {max_seconds / 60:.1f} of {duration / 60:.1f} minutes."
    return loaded.waveform, note
