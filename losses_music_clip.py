"""The five pretraining objectives of the thesis (ch. 4.4), one small module each, one call shape:

    loss(audio_z, text_z, text_audio_index, logit_scale) -> scalar

`audio_z` (B, d) are the z embeddings of B distinct tracks, `text_z` (M, d) those of M texts, and
`text_audio_index[m]` the row of `audio_z` that text m describes (several texts may describe one track).
Embeddings come in raw; each loss normalises what it compares.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _check(audio_z: torch.Tensor, text_z: torch.Tensor, text_audio_index: torch.Tensor) -> None:
    if audio_z.ndim != 2 or text_z.ndim != 2 or audio_z.shape[1] != text_z.shape[1]:
        raise ValueError(
            f"audio_z (B, d) and text_z (M, d) must share d, got {tuple(audio_z.shape)} and "
            f"{tuple(text_z.shape)}"
        )
    if text_audio_index.shape != (text_z.shape[0],):
        raise ValueError(
            f"text_audio_index must have one entry per text ({text_z.shape[0]}), "
            f"got shape {tuple(text_audio_index.shape)}"
        )
    if text_z.shape[0] and (text_audio_index.min() < 0 or text_audio_index.max() >= audio_z.shape[0]):
        raise ValueError(f"text_audio_index must point into the {audio_z.shape[0]} audio rows")


def _same_track(text_audio_index: torch.Tensor) -> torch.Tensor:
    return text_audio_index[:, None] == text_audio_index[None, :]


class NTXentLoss(nn.Module):
    """1-Text (thesis 4.4.1): each pair (audio of text m, text m) against the other pairs of the batch.

    Pairs of the same track other than the pair itself are masked out of the denominator (they are not
    negatives). Symmetric (CLIP) by default; `symmetric=False` keeps the thesis' audio→text form.
    """

    def __init__(self, symmetric: bool = True) -> None:
        super().__init__()
        self.symmetric = symmetric

    def forward(self, audio_z, text_z, text_audio_index, logit_scale) -> torch.Tensor:
        _check(audio_z, text_z, text_audio_index)
        audio = F.normalize(audio_z, dim=-1)[text_audio_index]  # one audio row per pair
        text = F.normalize(text_z, dim=-1)
        logits = logit_scale * audio @ text.T  # (M, M): pair m's audio against every pair's text
        eye = torch.eye(len(text), dtype=torch.bool, device=logits.device)
        logits = logits.masked_fill(_same_track(text_audio_index) & ~eye, float("-inf"))
        targets = torch.arange(len(text), device=logits.device)
        loss = F.cross_entropy(logits, targets)
        if self.symmetric:
            loss = (loss + F.cross_entropy(logits.T, targets)) / 2
        return loss


class IndependentPairsLoss(NTXentLoss):
    """IS (thesis 4.4.2): a track's three sentences become three independent (audio, sentence) pairs.

    The math is NT-Xent over pairs with same-track pairs masked; what differs from 1-Text is the batch
    (three sentences per track instead of one joined caption).
    """


class SupConLoss(nn.Module):
    """SCL (thesis 4.4.2): each audio anchor against all texts, positives = the texts of its own track.

    Log-probabilities are averaged over the positives (SupCon's "out" form, so the scale does not grow with the
    number of sentences). Symmetric adds the text→audio direction, where each text has exactly one positive audio.
    """

    def __init__(self, symmetric: bool = True) -> None:
        super().__init__()
        self.symmetric = symmetric

    def forward(self, audio_z, text_z, text_audio_index, logit_scale) -> torch.Tensor:
        _check(audio_z, text_z, text_audio_index)
        logits = logit_scale * F.normalize(audio_z, dim=-1) @ F.normalize(text_z, dim=-1).T  # (B, M)
        positives = text_audio_index[None, :] == torch.arange(len(audio_z), device=logits.device)[:, None]
        counts = positives.sum(1)
        if (counts == 0).any():
            raise ValueError("every audio in a SupCon batch needs at least one text of its own track")
        log_prob = logits.log_softmax(dim=1)
        loss = -(log_prob * positives).sum(1).div(counts).mean()
        if self.symmetric:
            loss = (loss + F.cross_entropy(logits.T, text_audio_index)) / 2
        return loss


class StochasticTripletLoss(nn.Module):
    """STL (thesis 4.4.2): per audio, one positive sentence sampled uniformly from its own track and one negative
    sampled uniformly from the texts of other tracks in the batch; hinge on the distance gap.

    Distances on L2-normalised z: cosine distance (1 - cos) or squared L2. `logit_scale` is unused.
    """

    def __init__(self, margin: float = 0.2, distance: str = "cosine") -> None:
        super().__init__()
        if distance not in ("cosine", "squared_l2"):
            raise ValueError(f"distance must be 'cosine' or 'squared_l2', got {distance!r}")
        self.margin = margin
        self.distance = distance

    def forward(self, audio_z, text_z, text_audio_index, logit_scale=None, generator=None) -> torch.Tensor:
        _check(audio_z, text_z, text_audio_index)
        audio = F.normalize(audio_z, dim=-1)
        text = F.normalize(text_z, dim=-1)
        own = text_audio_index[None, :] == torch.arange(len(audio), device=audio.device)[:, None]  # (B, M)
        if (own.sum(1) == 0).any() or (~own).sum(1).eq(0).any():
            raise ValueError(
                "every audio in a triplet batch needs a text of its own track and one of another track"
            )
        positive = _sample_columns(own, generator)
        negative = _sample_columns(~own, generator)
        cos_pos = (audio * text[positive]).sum(-1)
        cos_neg = (audio * text[negative]).sum(-1)
        scale = 1.0 if self.distance == "cosine" else 2.0  # ||a - t||^2 = 2 - 2 cos for unit vectors
        return F.relu(scale * (cos_neg - cos_pos) + self.margin).mean()


class MatchingLoss(nn.Module):
    """SMM (thesis 4.4.3): a binary head on concatenated z embeddings says whether audio and text belong together.

    Every audio gets one true pair (a sentence of its own track, sampled uniformly) and one shuffled pair (a text of
    another track, sampled uniformly): exactly 1:1 positives and negatives; BCE-with-logits.
    """

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head = head

    def forward(self, audio_z, text_z, text_audio_index, logit_scale=None, generator=None) -> torch.Tensor:
        _check(audio_z, text_z, text_audio_index)
        own = text_audio_index[None, :] == torch.arange(len(audio_z), device=audio_z.device)[:, None]
        if (own.sum(1) == 0).any() or (~own).sum(1).eq(0).any():
            raise ValueError(
                "every audio in a matching batch needs a text of its own track and one of another track"
            )
        texts = torch.cat([_sample_columns(own, generator), _sample_columns(~own, generator)])
        audio = torch.cat([audio_z, audio_z])
        logits = self.head(torch.cat([audio, text_z[texts]], dim=-1)).squeeze(-1)
        labels = torch.cat([torch.ones(len(audio_z)), torch.zeros(len(audio_z))]).to(logits)
        return F.binary_cross_entropy_with_logits(logits, labels)


def _sample_columns(allowed: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One column per row, uniformly among the allowed ones."""
    weights = allowed.float().cpu()
    return torch.multinomial(weights, 1, generator=generator).squeeze(1).to(allowed.device)


def build_loss(config, matching_head: nn.Module | None = None) -> nn.Module:
    """The loss a `MusicClipConfig` asks for."""
    if config.objective == "ntxent":
        return NTXentLoss(config.symmetric_loss)
    if config.objective == "independent":
        return IndependentPairsLoss(config.symmetric_loss)
    if config.objective == "supcon":
        return SupConLoss(config.symmetric_loss)
    if config.objective == "triplet":
        return StochasticTripletLoss(config.triplet_margin, config.triplet_distance)
    if config.objective == "matching":
        if matching_head is None:
            raise ValueError("the matching objective needs the model's matching head")
        return MatchingLoss(matching_head)
    raise ValueError(f"unknown objective {config.objective!r}")
