"""Decode an uploaded file (audio or the audio track of a video) into samples, with readable failures."""

from __future__ import annotations

from pathlib import Path

import numpy as np


class UploadError(ValueError):
    """A problem with the visitor's file, worded for the visitor."""


def decode_upload(path: str | None, max_seconds: float) -> tuple[np.ndarray, int, str]:
    """Return `(samples (channels, n), sampling_rate, note)` at the file's own rate.

    Resampling and downmixing stay in the feature extractor (the one mel path); only the first
    `max_seconds` are decoded so a 20-minute upload costs the same as a 4.5-minute one.
    """
    if not path:
        raise UploadError("Upload or record a clip first.")
    from torchcodec.decoders import AudioDecoder  # loads FFmpeg's libraries: seconds, so not at start-up

    name = Path(path).name
    try:
        decoder = AudioDecoder(path)
        duration = decoder.metadata.duration_seconds
        if duration == 0:
            raise UploadError(f"`{name}` contains no audio samples (an empty recording?).")
        samples = decoder.get_samples_played_in_range(0.0, max_seconds)
    except UploadError:
        raise
    except Exception as err:  # torchcodec raises RuntimeError/ValueError for broken or non-audio files
        if "No audio frames were decoded" in str(err):
            raise UploadError(f"`{name}` contains no audio samples (an empty recording?).") from err
        raise UploadError(
            f"Could not read audio from `{name}`: is it an audio or video file? ({err})"
        ) from err
    audio = samples.data.numpy()
    if audio.size == 0 or audio.shape[-1] == 0:
        raise UploadError(f"`{name}` contains no audio samples (an empty recording?).")
    if not np.isfinite(audio).all():
        raise UploadError(f"`{name}` decodes to invalid (non-finite) samples.")
    if not np.any(audio):
        raise UploadError(f"`{name}` is silent: there is nothing to analyse.")
    note = ""
    if duration is not None and duration > max_seconds + 0.5:
        note = f"Analysed the first {max_seconds / 60:.1f} of {duration / 60:.1f} minutes."
    return audio, int(samples.sample_rate), note
