"""Load the Hub model files (remote code) and run the processor → model path for each tab."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from config import locate
from transformers import (
    AutoFeatureExtractor,
    AutoModel,
    AutoModelForAudioClassification,
    AutoProcessor,
    pipeline,
)


@dataclass
class Clip:
    """One upload after the feature extractor: the waveform at 16 kHz and its log-mel (T, n_mels)."""

    waveform: np.ndarray
    mel: np.ndarray
    sampling_rate: int


class ContrastiveModel:
    """The pretrained MusicClipModel: text and audio embeddings, zero-shot through the transformers pipeline."""

    def __init__(self, ref: str):
        name, revision = locate(ref, remote_code=True)  # never a Hub fetch for a mistyped local path
        self.model = AutoModel.from_pretrained(name, revision=revision, trust_remote_code=True).eval()
        self.processor = AutoProcessor.from_pretrained(name, revision=revision, trust_remote_code=True)
        self.feature_extractor = self.processor.feature_extractor
        self.tokenizer = self.processor.tokenizer
        # The very object `pipeline("zero-shot-audio-classification", model=ref)` would build, minus a reload.
        self.zero_shot_pipe = pipeline(
            "zero-shot-audio-classification",
            model=self.model,
            feature_extractor=self.feature_extractor,
            tokenizer=self.tokenizer,
        )

    def prepare(self, audio: np.ndarray, sampling_rate: int) -> Clip:
        return prepare_clip(self.feature_extractor, audio, sampling_rate)

    @torch.inference_mode()
    def text_embeddings(self, texts: list[str]) -> np.ndarray:
        """L2-normalised z embeddings (n, d), ready for inner-product search."""
        tokens = self.processor(text=texts)
        z = self.model.get_text_features(
            input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]
        )
        return normalise(z)

    @torch.inference_mode()
    def audio_embeddings(self, mels: list[np.ndarray]) -> np.ndarray:
        """L2-normalised z embeddings (n, d) of stored or fresh log-mels (T, n_mels)."""
        feats = self.feature_extractor.window(mels)
        z = self.model.get_audio_features(feats["input_features"], feats["window_mask"])
        return normalise(z)

    def zero_shot(self, clip: Clip, labels: list[str]) -> dict[str, float]:
        results = self.zero_shot_pipe(clip.waveform, candidate_labels=labels)
        return {r["label"]: float(r["score"]) for r in results}


class GenreClassifier:
    """The finetuned MusicClipForAudioClassification and its own feature extractor."""

    def __init__(self, ref: str):
        name, revision = locate(ref, remote_code=True)
        self.model = AutoModelForAudioClassification.from_pretrained(
            name, revision=revision, trust_remote_code=True
        ).eval()
        self.feature_extractor = AutoFeatureExtractor.from_pretrained(
            name, revision=revision, trust_remote_code=True
        )

    def prepare(self, audio: np.ndarray, sampling_rate: int) -> Clip:
        return prepare_clip(self.feature_extractor, audio, sampling_rate)

    @torch.inference_mode()
    def probabilities(self, clip: Clip) -> dict[str, float]:
        feats = self.feature_extractor.window([clip.mel])
        logits = self.model(input_features=feats["input_features"], window_mask=feats["window_mask"]).logits[
            0
        ]
        probs = logits.softmax(-1).tolist()
        id2label = self.model.config.id2label
        return {id2label[i]: float(p) for i, p in enumerate(probs)}


def prepare_clip(feature_extractor, audio: np.ndarray, sampling_rate: int) -> Clip:
    """prepare_waveform → log_mel: the extractor's own steps, kept so the tab can also draw the mel."""
    waveform = feature_extractor.prepare_waveform(audio, sampling_rate)
    mel = feature_extractor.log_mel(waveform)
    return Clip(waveform=waveform, mel=mel, sampling_rate=feature_extractor.sampling_rate)


def normalise(z: torch.Tensor) -> np.ndarray:
    return torch.nn.functional.normalize(z.float(), dim=-1).cpu().numpy().astype(np.float32)
