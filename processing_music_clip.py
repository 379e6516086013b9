"""MusicCLIP processor: the feature extractor for audio and the text tower's tokenizer, in one call."""

from __future__ import annotations

from typing import Any

from transformers import BatchFeature, ProcessorMixin

try:
    from .feature_extraction_music_clip import MusicClipFeatureExtractor
except ImportError:
    from feature_extraction_music_clip import MusicClipFeatureExtractor


class MusicClipProcessor(ProcessorMixin):
    """`processor(text=..., audio=..., sampling_rate=...)` → one `BatchFeature` with `input_ids`,
    `attention_mask` and `input_features`, `window_mask`.

    `audio` is read as the feature extractor reads it: a file, bytes or a 1-D array is one clip; a list of clips
    or a 2-D `(batch, samples)` array is a batch of mono clips (as in transformers); multichannel audio is a file
    or a list of `(channels, samples)` arrays."""

    def __init__(
        self, feature_extractor: MusicClipFeatureExtractor, tokenizer: Any, text_max_length: int = 128
    ):
        super().__init__(feature_extractor, tokenizer)
        self.text_max_length = text_max_length

    def __call__(
        self,
        text: str | list[str] | None = None,
        audio: Any = None,
        sampling_rate: int | None = None,
        return_tensors: str | None = "pt",
        padding: bool | str = True,
        truncation: bool = True,
        max_length: int | None = None,
        **kwargs: Any,
    ) -> BatchFeature:
        if text is None and audio is None:
            raise ValueError("give text, audio or both")
        data: dict[str, Any] = {}
        if text is not None:
            if isinstance(text, str):
                text = [text]
            if not text or any(not isinstance(t, str) for t in text):
                raise ValueError("text must be a string or a non-empty list of strings")
            data.update(
                self.tokenizer(
                    text,
                    padding=padding,
                    truncation=truncation,
                    max_length=max_length or self.text_max_length,
                    return_tensors=return_tensors,
                )
            )
        if audio is not None:
            data.update(
                self.feature_extractor(
                    audio, sampling_rate=sampling_rate, return_tensors=return_tensors, **kwargs
                )
            )
        return BatchFeature(data, tensor_type=return_tensors)

    def save_pretrained(self, save_directory: str, **kwargs: Any) -> Any:
        """Also writes `preprocessor_config.json`: pipelines load `AutoFeatureExtractor`, which reads it."""
        result = super().save_pretrained(save_directory, **kwargs)
        fresh = MusicClipFeatureExtractor(
            **self.feature_extractor.to_dict()
        )  # a fresh instance: see HUB-FACTS
        fresh.save_pretrained(save_directory)
        return result

    @property
    def model_input_names(self) -> list[str]:
        return list(
            dict.fromkeys(self.tokenizer.model_input_names + self.feature_extractor.model_input_names)
        )


MusicClipProcessor.register_for_auto_class("AutoProcessor")

__all__ = ["MusicClipProcessor"]
