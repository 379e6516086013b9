"""One audio file → one L2-normalised track embedding, the way the indexer, `search --like` and the benchmark
all do it: the project's audio read → the feature extractor's log-mel → the model's multi-window path (windows
spread evenly over the whole track, embeddings pooled by the model)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError

from audio_music_clip import (  # longer files: the first ten minutes (as the builder and Space)
    MAX_SECONDS,
    load_waveform,
)


def read_waveform(path: Path, fe, max_seconds: float = MAX_SECONDS) -> np.ndarray:
    """The one place this package reads audio: the project's one audio path (`audio_music_clip.load_waveform`:
    any format FFmpeg reads → mono float32 at the extractor's rate, with its acceptance rules).

    Raises `ValueError` (`AudioRejected`) with a reason for a file it cannot use.
    """
    return load_waveform(str(path), target_rate=int(fe.sampling_rate), max_seconds=max_seconds)


@dataclass
class Embedder:
    """A MusicClipModel's audio side (model folder) with its feature extractor and processor."""

    model_dir: str
    load_text: bool = False
    device: str = "cpu"  # where the model runs; the windows of a track are embedded as one batch there

    def __post_init__(self) -> None:
        from feature_extraction_music_clip import MusicClipFeatureExtractor
        from modeling_music_clip import MusicClipModel

        try:
            self.model = MusicClipModel.from_pretrained(self.model_dir).eval()
        except (OSError, ValueError, RuntimeError, SafetensorError) as err:  # damaged or foreign weights
            raise ValueError(f"cannot load the model {self.model_dir}: {type(err).__name__}: {err}") from None
        # Channels-last conv weights: PyTorch's CPU max-pool over the first block's wide NCHW maps is the CNN's
        # main cost; channels-last makes a whole-track embedding 2-3x faster on one thread (same values to 1e-6).
        self.model.to(self.device)
        self.model.audio_encoder.to(memory_format=torch.channels_last)
        self.fe = MusicClipFeatureExtractor.from_pretrained(self.model_dir)
        self.processor = None
        if self.load_text:  # the local classes, not the folder's remote code (nothing to trust or copy)
            from transformers import PreTrainedTokenizerFast

            from processing_music_clip import MusicClipProcessor

            tokenizer = PreTrainedTokenizerFast.from_pretrained(self.model_dir)
            self.processor = MusicClipProcessor(self.fe, tokenizer)

    @torch.inference_mode()
    def audio(self, waveform: np.ndarray) -> np.ndarray:
        feats = self.fe.window([self.fe.log_mel(waveform)])
        z = self.model.get_audio_features(
            feats["input_features"].to(self.device), feats["window_mask"].to(self.device)
        )
        return _normalise(z)[0]

    def file(self, path: Path) -> tuple[np.ndarray, float]:
        """(embedding, seconds read) of one file."""
        wave = read_waveform(path, self.fe)
        return self.audio(wave), wave.size / self.fe.sampling_rate

    @torch.inference_mode()
    def text(self, text: str) -> np.ndarray:
        if self.processor is None:
            raise RuntimeError("Embedder(load_text=True) is needed for text queries")
        tokens = self.processor(text=[text])
        z = self.model.get_text_features(
            input_ids=tokens["input_ids"].to(self.device),
            attention_mask=tokens["attention_mask"].to(self.device),
        )
        return _normalise(z)[0]


def _normalise(z: torch.Tensor) -> np.ndarray:
    return torch.nn.functional.normalize(z.float(), dim=-1).cpu().numpy().astype(np.float32)
