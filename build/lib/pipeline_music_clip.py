"""The `transformers` audio pipelines, reading audio through MusicCLIP's one audio path (`audio_music_clip`).

The stock pipelines decode a path with their own `ffmpeg_read` (FFmpeg's downmix and resampler), reject
multi-channel arrays and resample other rates with torchaudio; a model folder registers these classes instead
(`custom_pipelines` in its config), so `pipeline(task, model=folder, trust_remote_code=True)` gives a file, bytes,
a `{"raw"/"array": samples, "sampling_rate": rate}` dict or a datasets `AudioDecoder` the same waveform the dataset
builder and the processor make, with the same acceptance rules.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from transformers import AudioClassificationPipeline, ZeroShotAudioClassificationPipeline

try:
    from .audio_music_clip import is_encoded, load_waveform
except ImportError:
    from audio_music_clip import is_encoded, load_waveform


def model_waveform(feature_extractor: Any, audio: Any) -> np.ndarray:
    """Any input a stock audio pipeline takes → mono float32 at the extractor's rate, through the one path."""
    rate = int(feature_extractor.sampling_rate)
    if isinstance(audio, str) and audio.startswith(("http://", "https://")):
        import httpx  # a dependency of transformers, as in the stock pipelines

        audio = httpx.get(audio, follow_redirects=True).content
    if is_encoded(audio):
        return load_waveform(audio, target_rate=rate)
    if hasattr(audio, "get_all_samples"):  # a torchcodec AudioDecoder, as `datasets` gives audio columns
        samples = audio.get_all_samples()
        return load_waveform(samples.data, int(samples.sample_rate), target_rate=rate)
    if isinstance(audio, dict):
        samples = audio.get("raw", audio.get("array"))
        if samples is None or "sampling_rate" not in audio:
            raise ValueError('a dict input needs "raw" (or "array") samples and their "sampling_rate"')
        return load_waveform(samples, audio["sampling_rate"], target_rate=rate)
    return load_waveform(
        audio, rate, target_rate=rate
    )  # bare samples are at the model's rate, as for the stock ones


class MusicClipAudioClassificationPipeline(AudioClassificationPipeline):
    """`audio-classification` for a MusicCLIP classifier folder."""

    def preprocess(self, inputs: Any) -> Any:
        return super().preprocess(model_waveform(self.feature_extractor, inputs))


class MusicClipZeroShotAudioClassificationPipeline(ZeroShotAudioClassificationPipeline):
    """`zero-shot-audio-classification` for a pretrained MusicCLIP folder."""

    def preprocess(self, audio: Any, *args: Any, **kwargs: Any) -> Any:
        return super().preprocess(model_waveform(self.feature_extractor, audio), *args, **kwargs)


# What a folder's config.json names under `custom_pipelines`, by the model class saved in it.
CUSTOM_PIPELINES = {
    "MusicClipForAudioClassification": {
        "audio-classification": {
            "impl": f"{__name__.rsplit('.', 1)[-1]}.MusicClipAudioClassificationPipeline",
            "pt": ["AutoModelForAudioClassification"],
            "type": "audio",
        }
    },
    "MusicClipModel": {
        "zero-shot-audio-classification": {
            "impl": f"{__name__.rsplit('.', 1)[-1]}.MusicClipZeroShotAudioClassificationPipeline",
            "pt": ["AutoModel"],
            "type": "multimodal",
        }
    },
}

__all__ = [
    "CUSTOM_PIPELINES",
    "MusicClipAudioClassificationPipeline",
    "MusicClipZeroShotAudioClassificationPipeline",
    "model_waveform",
]
