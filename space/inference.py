"""Load the Hub model files (remote code) and run the processor → model path for each tab."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from audio_input import decode_upload
from config import SHORT_CLIP_SECONDS, locate
from transformers import (
    AutoFeatureExtractor,
    AutoModel,
    AutoModelForAudioClassification,
    AutoProcessor,
    ZeroShotAudioClassificationPipeline,
    pipeline,
)

OOD_WARNING = "This recording is unlike the music the model was trained on; treat these labels as guesses."
# Text search: a best match below this percentile of the library's own caption-to-track scores is a poor match.
MATCH_FLOOR_PERCENTILE = 5


@dataclass
class Clip:
    """One upload after the feature extractor: the waveform at 16 kHz and its log-mel (T, n_mels)."""

    waveform: np.ndarray
    mel: np.ndarray
    sampling_rate: int


class ContrastiveModel:
    """The pretrained MusicClipModel: text and audio embeddings, zero-shot through the transformers pipeline."""

    def __init__(self, ref: str, device: str = "cpu"):
        name, revision = locate(ref, remote_code=True)  # never a Hub fetch for a mistyped local path
        self.device = torch.device(device)
        self.model = AutoModel.from_pretrained(name, revision=revision, trust_remote_code=True).eval()
        self.model.to(self.device)
        self.processor = AutoProcessor.from_pretrained(name, revision=revision, trust_remote_code=True)
        self.feature_extractor = self.processor.feature_extractor
        self.tokenizer = self.processor.tokenizer
        # The very object `pipeline("zero-shot-audio-classification", model=ref)` would build, minus a reload.
        self.zero_shot_pipe = pipeline(
            "zero-shot-audio-classification",
            # The stock class: uploads reach it as the one audio path's waveform (mono at the model's rate), and a
            # folder's own class (custom_pipelines) cannot be resolved from a model object.
            pipeline_class=ZeroShotAudioClassificationPipeline,
            model=self.model,
            feature_extractor=self.feature_extractor,
            tokenizer=self.tokenizer,
            device=self.device,
        )

    @torch.inference_mode()
    def text_embeddings(self, texts: list[str]) -> np.ndarray:
        """L2-normalised z embeddings (n, d), ready for inner-product search."""
        tokens = self.processor(text=texts)
        z = self.model.get_text_features(
            input_ids=tokens["input_ids"].to(self.device),
            attention_mask=tokens["attention_mask"].to(self.device),
        )
        return normalise(z)

    @torch.inference_mode()
    def audio_embeddings(self, mels: list[np.ndarray]) -> np.ndarray:
        """L2-normalised z embeddings (n, d) of stored or fresh log-mels (T, n_mels)."""
        feats = self.feature_extractor.window(mels).to(self.device)
        z = self.model.get_audio_features(feats["input_features"], feats["window_mask"])
        return normalise(z)

    def zero_shot(self, clip: Clip, labels: list[str]) -> dict[str, float]:
        results = self.zero_shot_pipe(clip.waveform, candidate_labels=labels)
        return {r["label"]: float(r["score"]) for r in results}

    @torch.inference_mode()
    def out_of_distribution(self, clip: Clip) -> bool | None:
        """Whether the clip is unlike the model's training clips (None: the checkpoint has no statistics)."""
        return out_of_distribution(self.model, self.feature_extractor, clip)


class GenreClassifier:
    """The finetuned MusicClipForAudioClassification and its own feature extractor."""

    def __init__(self, ref: str, device: str = "cpu"):
        name, revision = locate(ref, remote_code=True)
        self.device = torch.device(device)
        self.model = AutoModelForAudioClassification.from_pretrained(
            name, revision=revision, trust_remote_code=True
        ).eval()
        self.model.to(self.device)
        self.feature_extractor = load_feature_extractor(ref)

    @torch.inference_mode()
    def classify(self, clip: Clip) -> tuple[dict[str, float], bool | None]:
        """The model's calibrated probabilities per label, and its out-of-distribution flag (None: no
        statistics in the checkpoint)."""
        feats = self.feature_extractor.window([clip.mel]).to(self.device)
        out = self.model(input_features=feats["input_features"], window_mask=feats["window_mask"])
        id2label = self.model.config.id2label
        probs = {id2label[i]: float(p) for i, p in enumerate(out.probabilities[0].tolist())}
        if out.ood_score is None:
            return probs, None
        return probs, is_short(clip) or bool(self.model.is_out_of_distribution(out.ood_score)[0])


def is_short(clip: Clip) -> bool:
    """Too short for the OOD score to say anything (see `SHORT_CLIP_SECONDS`): flagged whatever it scores."""
    return clip.waveform.size / clip.sampling_rate < SHORT_CLIP_SECONDS


def out_of_distribution(model, feature_extractor, clip: Clip) -> bool | None:
    if not model.has_ood_statistics:
        return None
    if is_short(clip):
        return True
    feats = feature_extractor.window([clip.mel]).to(model.device)
    return bool(
        model.is_out_of_distribution(model.ood_score(feats["input_features"], feats["window_mask"]))[0]
    )


def ood_note(flagged: bool | None) -> str:
    return f"⚠️ {OOD_WARNING}" if flagged else ""


def library_match_floor(library, max_captions: int = 10_000) -> float | None:
    """`match_floor` over the library's captioned tracks (a fixed-seed sample of them for a huge library)."""
    from music_clip_library.library_index import AUDIO_INDEX, TEXT_INDEX

    n = len(library.captions)
    if n == 0:
        return None
    rows = np.sort(np.random.default_rng(0).permutation(n)[:max_captions]).tolist()
    captions = library.captions.select_columns(["track_id", TEXT_INDEX])
    picked = captions[rows] if n > max_captions else captions[:]
    position = {t: i for i, t in enumerate(library.audio_rows["track_id"])}
    tracks = library.embeddings.select([position[t] for t in picked["track_id"]])[AUDIO_INDEX]
    return match_floor(np.asarray(picked[TEXT_INDEX], np.float32), np.asarray(tracks, np.float32))


def match_floor(caption_embeddings: np.ndarray, track_embeddings: np.ndarray) -> float | None:
    """The 5th percentile of the library's own caption-to-track scores (row i of both describes one track)."""
    if len(caption_embeddings) == 0:
        return None
    own = (np.asarray(caption_embeddings) * np.asarray(track_embeddings)).sum(1)
    return float(np.percentile(own, MATCH_FLOOR_PERCENTILE))


def weak_match_note(best_score: float | None, floor: float | None) -> str:
    if best_score is None or floor is None or best_score >= floor:
        return ""
    return (
        f"⚠️ No track matches this description well: the best score ({best_score:.3f}) is below the "
        f"{MATCH_FLOOR_PERCENTILE}th percentile ({floor:.3f}) of the library's own caption-to-track matches, "
        "so these are only the nearest tracks."
    )


def load_feature_extractor(ref: str):
    """A served folder's (or pinned Hub repo's) feature extractor, with its remote code."""
    name, revision = locate(ref, remote_code=True)
    return AutoFeatureExtractor.from_pretrained(name, revision=revision, trust_remote_code=True)


def read_clip(path: str | None, feature_extractor, max_seconds: float) -> tuple[Clip, str]:
    """An upload → its Clip and a note for the visitor: all a file goes through before the model."""
    waveform, note = decode_upload(path, feature_extractor, max_seconds)
    return prepare_clip(feature_extractor, waveform), note


def prepare_clip(feature_extractor, waveform: np.ndarray) -> Clip:
    """The waveform from `audio_input.decode_upload` → log_mel, kept so the tab can also draw the mel."""
    mel = feature_extractor.log_mel(waveform)
    return Clip(waveform=waveform, mel=mel, sampling_rate=feature_extractor.sampling_rate)


def normalise(z: torch.Tensor) -> np.ndarray:
    return torch.nn.functional.normalize(z.float(), dim=-1).cpu().numpy().astype(np.float32)
