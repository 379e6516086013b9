"""The one mel code path of MusicCLIP: waveform → 16 kHz mono → log-mel (T, n_mels) → CNN windows.

The dataset builder stores `log_mel` outputs; training windows the stored mels with `window`; the Space and the
pipelines call the extractor on raw audio. Nothing else in the project computes mels.
"""

from __future__ import annotations

import math
import warnings
from functools import lru_cache
from typing import Any

import numpy as np
import torch
import torchaudio
from transformers import BatchFeature, SequenceFeatureExtractor

try:
    from .audio_music_clip import MAX_SECONDS, AudioRejected, LoadedAudio, is_encoded, load_audio
    from .configuration_music_clip import FRONT_END, window_frames
except ImportError:
    from audio_music_clip import MAX_SECONDS, AudioRejected, LoadedAudio, is_encoded, load_audio
    from configuration_music_clip import FRONT_END, window_frames


@lru_cache(maxsize=8)
def _mel_transform(sampling_rate: int, n_fft: int, hop_length: int, n_mels: int) -> torch.nn.Module:
    # Cached per parameter set, not stored on the extractor: the extractor must stay JSON-serialisable.
    # Constant (zero) padding at the edges, so clips shorter than n_fft/2 still work and padding is silence.
    return torchaudio.transforms.MelSpectrogram(
        sample_rate=sampling_rate,
        n_fft=n_fft,
        hop_length=hop_length,
        n_mels=n_mels,
        power=2.0,
        center=True,
        pad_mode="constant",
    )


class MusicClipFeatureExtractor(SequenceFeatureExtractor):
    r"""Log-mel windows for the MusicCLIP audio CNN.

    One clip is a file path or the bytes of a file (any format FFmpeg reads) or a 1-D array (mono). A batch is a
    list or tuple of clips, or a 2-D array `(batch, samples)` of mono clips, as every transformers feature
    extractor reads it. Multichannel audio is a file, or a 2-D `(channels, samples)` array inside a list (one
    multichannel clip: `[stereo]`; the shorter axis is channels), downmixed by the mean. numpy arrays, torch tensors and lists of numbers are accepted; integer PCM is scaled to
    [-1, 1]. Everything goes through `audio_music_clip.load_audio` (mean downmix, soxr resampling to
    `sampling_rate`, cut at `max_seconds`, clip to ±1) and its acceptance rules: a clip under 1 s, silent
    (peak below -60 dBFS) or non-finite raises `AudioRejected`, a `ValueError` with a readable message.

    Features are `log(1 + power mel)`, so silence and padding are exactly 0. With `multi_window=True` a clip
    longer than one window is covered by `ceil(T / window_frames)` windows spread evenly over it (no padding,
    deterministic) and the model pools their embeddings; with `False` the clip is padded or truncated to one window
    (the thesis' setting). Each clip is processed on its own, so a clip's features do not depend on its batch.
    """

    model_input_names = ["input_features", "window_mask"]

    def __init__(
        self,
        feature_size: int = FRONT_END["n_mels"],
        sampling_rate: int = FRONT_END["sampling_rate"],
        n_fft: int = FRONT_END["n_fft"],
        hop_length: int = FRONT_END["hop_length"],
        window_samples: int = FRONT_END["window_samples"],
        multi_window: bool = True,
        max_windows: int = 64,
        mel_mean: list[float] | None = None,
        mel_std: list[float] | None = None,
        padding_value: float = 0.0,
        return_attention_mask: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            feature_size=feature_size,
            sampling_rate=sampling_rate,
            padding_value=padding_value,
            return_attention_mask=return_attention_mask,
            **kwargs,
        )
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.window_samples = window_samples
        self.multi_window = multi_window
        self.max_windows = max_windows
        self.mel_mean = list(mel_mean) if mel_mean is not None else None
        self.mel_std = list(mel_std) if mel_std is not None else None
        if window_samples < hop_length or max_windows < 1:
            raise ValueError("window_samples must be >= hop_length and max_windows >= 1")
        for name, stats in (("mel_mean", self.mel_mean), ("mel_std", self.mel_std)):
            if stats is not None and len(stats) != feature_size:
                raise ValueError(f"{name} needs {feature_size} values (one per mel bin), got {len(stats)}")
        if self.mel_std is not None and min(self.mel_std) <= 0:
            raise ValueError("mel_std values must be > 0")

    @classmethod
    def from_model_config(cls, config: Any, **kwargs: Any) -> MusicClipFeatureExtractor:
        """The extractor matching a `MusicClipConfig` (same front end and window)."""
        return cls(
            feature_size=config.n_mels,
            sampling_rate=config.sampling_rate,
            n_fft=config.n_fft,
            hop_length=config.hop_length,
            window_samples=config.window_samples,
            **kwargs,
        )

    @property
    def window_frames(self) -> int:
        return window_frames(self.window_samples, self.hop_length)

    # -- stage 1: the one audio path (audio_music_clip): decode, downmix, resample, cut, clip, check -----------
    def load_audio(
        self,
        audio: Any,
        sampling_rate: int | None = None,
        *,
        max_seconds: float | None = MAX_SECONDS,
        check: bool = True,
    ) -> LoadedAudio:
        """A file path, bytes or samples → `LoadedAudio(waveform at self.sampling_rate, info)`.

        Raises `AudioRejected` (a `ValueError`) for audio the model cannot use (too short, silent, non-finite,
        unreadable) and `ValueError` for a wrong call."""
        if sampling_rate is None and not is_encoded(audio):
            warnings.warn(
                f"No sampling_rate given: assuming {self.sampling_rate} Hz. Pass sampling_rate to avoid wrong "
                "features.",
                stacklevel=3,
            )
            sampling_rate = self.sampling_rate
        return load_audio(
            audio, sampling_rate, target_rate=self.sampling_rate, max_seconds=max_seconds, check=check
        )

    def prepare_waveform(self, audio: Any, sampling_rate: int | None = None, **options: Any) -> np.ndarray:
        """Any clip (path, bytes or samples) → 1-D float32 at `self.sampling_rate`; `options` and errors: see
        `load_audio`."""
        return self.load_audio(audio, sampling_rate, **options).waveform

    # -- stage 2: log-mel --------------------------------------------------------------------------------------
    def log_mel(self, waveform: np.ndarray) -> np.ndarray:
        """1-D waveform at `self.sampling_rate` → time-major log-mel `(T, n_mels)`, T = len // hop + 1."""
        transform = _mel_transform(self.sampling_rate, self.n_fft, self.hop_length, self.feature_size)
        with torch.no_grad():
            mel = transform(torch.as_tensor(waveform, dtype=torch.float32))
        return torch.log1p(mel).T.contiguous().numpy()

    # -- stage 3: windows --------------------------------------------------------------------------------------
    def window_starts(self, num_frames: int, multi_window: bool | None = None) -> list[int]:
        """Start frames of the windows that cover a clip of `num_frames` frames (deterministic)."""
        multi_window = self.multi_window if multi_window is None else multi_window
        frames = self.window_frames
        if not multi_window or num_frames <= frames:
            return [0]
        count = min(math.ceil(num_frames / frames), self.max_windows)
        return [int(round(s)) for s in np.linspace(0, num_frames - frames, count)]

    def window(
        self, mels: list[np.ndarray], multi_window: bool | None = None, return_tensors: str | None = "pt"
    ) -> BatchFeature:
        """Stored log-mels `(T, n_mels)` → `input_features (B, W, n_mels, F)` and `window_mask (B, W)`."""
        if len(mels) == 0:
            raise ValueError("no clips given")
        frames, n_mels = self.window_frames, self.feature_size
        per_clip: list[list[np.ndarray]] = []
        for index, mel in enumerate(mels):
            mel = np.asarray(mel, dtype=np.float32)
            if mel.ndim != 2 or mel.shape[1] != n_mels or mel.shape[0] == 0:
                raise ValueError(f"mel {index} must have shape (T > 0, {n_mels}), got {mel.shape}")
            windows = []
            for start in self.window_starts(mel.shape[0], multi_window):
                chunk = mel[start : start + frames]
                if chunk.shape[0] < frames:  # shorter than one window: pad with silence (0)
                    chunk = np.pad(
                        chunk, ((0, frames - chunk.shape[0]), (0, 0)), constant_values=self.padding_value
                    )
                windows.append(chunk.T)
            per_clip.append(windows)
        max_windows = max(len(w) for w in per_clip)
        features = np.zeros((len(mels), max_windows, n_mels, frames), dtype=np.float32)
        mask = np.zeros((len(mels), max_windows), dtype=np.int64)
        for row, windows in enumerate(per_clip):
            features[row, : len(windows)] = np.stack(windows)
            mask[row, : len(windows)] = 1
        if self.mel_mean is not None or self.mel_std is not None:
            mean = np.asarray(self.mel_mean or [0.0] * n_mels, dtype=np.float32)[:, None]
            std = np.asarray(self.mel_std or [1.0] * n_mels, dtype=np.float32)[:, None]
            features = (features - mean) / std * mask[:, :, None, None]
        return BatchFeature({"input_features": features, "window_mask": mask}, tensor_type=return_tensors)

    def __call__(
        self,
        raw_audio: Any,
        sampling_rate: int | None = None,
        return_tensors: str | None = "pt",
        multi_window: bool | None = None,
        max_seconds: float | None = MAX_SECONDS,
        **kwargs: Any,
    ) -> BatchFeature:
        """One clip or a list of clips (paths, bytes or samples) → `BatchFeature(input_features, window_mask)`."""
        if getattr(raw_audio, "ndim", 1) > 2:
            raise ValueError(
                f"audio of shape {tuple(raw_audio.shape)}: give a 1-D clip or 2-D (batch, samples) array of mono "
                "clips, or a list of clips ((channels, samples) arrays for multichannel audio)"
            )
        clips = list(raw_audio) if _is_batch(raw_audio) else [raw_audio]
        if not clips:
            raise ValueError("no clips given")
        mels = []
        for index, clip in enumerate(clips):
            try:
                mels.append(self.log_mel(self.prepare_waveform(clip, sampling_rate, max_seconds=max_seconds)))
            except AudioRejected as err:
                if len(clips) == 1:
                    raise
                raise AudioRejected(err.reason, f"clip {index}: {err}") from None
            except ValueError as err:
                raise ValueError(f"clip {index}: {err}" if len(clips) > 1 else str(err)) from None
        return self.window(mels, multi_window=multi_window, return_tensors=return_tensors)


def _is_batch(audio: Any) -> bool:
    """A list/tuple of arrays (or of lists), or a 2-D array (rows: mono clips, as in transformers), is a batch;
    a 1-D array or a flat list of numbers is one clip."""
    if getattr(audio, "ndim", None) == 2:
        return True
    if isinstance(audio, (list, tuple)):
        return len(audio) == 0 or not isinstance(audio[0], (int, float, np.number))
    return False


MusicClipFeatureExtractor.register_for_auto_class("AutoFeatureExtractor")

__all__ = ["MusicClipFeatureExtractor"]
