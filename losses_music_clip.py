"""The five pretraining objectives of the thesis (ch. 4.4), one small module each, one call shape:

    loss(audio_z, text_z, text_audio_index, logit_scale, audio_group=None, generator=None) -> scalar

`audio_z` (B, d) are the z embeddings of B audio rows, `text_z` (M, d) those of M texts, and
`text_audio_index[m]` the row of `audio_z` that text m describes (several texts may describe one row).
`audio_group` (B,) int64 names each row's group (track or piece; None: every row its own group). No objective
treats a text and an audio row of one group as a negative pair: text m and row b are "same group" iff
`audio_group[text_audio_index[m]] == audio_group[b]`; text m's positives stay its own row.
Embeddings come in raw; each loss normalises what it compares. Any objective can carry an audio-audio term
(`WithAudioContrast`, config `audio_contrast_weight`): clips of one group are positives of each other.

Processes: under `torch.distributed` with K > 1 ranks every rank must call the loss (it is a collective), and
every objective scores the global batch: every rank's rows in rank order (ranks may hold different numbers of
rows; group ids must mean the same on every rank). Each rank computes the same global loss, and the gather's
backward sums the K ranks' gradients into each rank's own rows, so after DDP averages the K parameter gradients
they equal the one-process gradient of that global batch. K = 1 is the same code with an identity gather.
STL and SMM draw from `generator` (seed it identically on every rank); None uses torch's global generator on one
process and, on K, a generator seeded by rank 0's draw from it, so all ranks draw alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


def _check(
    audio_z: torch.Tensor,
    text_z: torch.Tensor,
    text_audio_index: torch.Tensor,
    audio_group: torch.Tensor | None = None,
) -> None:
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
    if audio_group is not None and (
        audio_group.shape != (audio_z.shape[0],) or audio_group.dtype.is_floating_point
    ):
        raise ValueError(
            f"audio_group must hold one integer group id per audio row ({audio_z.shape[0]}), "
            f"got {audio_group.dtype} of shape {tuple(audio_group.shape)}"
        )


def _world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _gather_rows(x: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Every rank's rows of `x` in rank order (ranks may hold different numbers of rows).

    With gradients, the backward sums every rank's gradient for this rank's rows into them."""
    padded = torch.cat([x, x.new_zeros((max(sizes) - len(x), *x.shape[1:]))]).contiguous()
    if x.requires_grad:
        from torch.distributed.nn.functional import all_gather

        parts = all_gather(padded)
    else:
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded)
    return torch.cat([part[:n] for part, n in zip(parts, sizes)])


@dataclass
class GlobalBatch:
    """What every objective scores: the batch of all processes, rows in rank order, groups resolved."""

    audio_z: torch.Tensor
    text_z: torch.Tensor
    text_audio_index: torch.Tensor
    audio_group: torch.Tensor

    def own(self) -> torch.Tensor:
        """(B, M): text m describes audio row b (its positives)."""
        rows = torch.arange(len(self.audio_z), device=self.text_audio_index.device)
        return self.text_audio_index[None, :] == rows[:, None]

    def same_group(self) -> torch.Tensor:
        """(B, M): text m's row and audio row b share a group (never a negative pair)."""
        return self.audio_group[:, None] == self.audio_group[self.text_audio_index][None, :]


def global_batch(
    audio_z: torch.Tensor,
    text_z: torch.Tensor,
    text_audio_index: torch.Tensor,
    audio_group: torch.Tensor | None = None,
) -> GlobalBatch:
    """Check this process' batch and gather all processes' (identity on one process)."""
    _check(audio_z, text_z, text_audio_index, audio_group)
    if _world_size() == 1:
        if audio_group is None:
            audio_group = torch.arange(len(audio_z), device=text_audio_index.device)
        return GlobalBatch(audio_z, text_z, text_audio_index, audio_group.to(text_audio_index.device))
    device = audio_z.device
    local = torch.tensor([len(audio_z), len(text_z), audio_group is not None], device=device)
    counts = _gather_rows(local[None], [1] * _world_size()).tolist()
    audio_sizes, text_sizes, has_group = (list(column) for column in zip(*counts))
    if len(set(has_group)) > 1:
        raise ValueError("audio_group must be given on every process or on none")
    offsets = torch.tensor([0, *audio_sizes[:-1]], device=device).cumsum(0)
    rank_of_text = torch.repeat_interleave(
        torch.arange(len(text_sizes), device=device), torch.tensor(text_sizes, device=device)
    )
    index = _gather_rows(text_audio_index.to(device), text_sizes) + offsets[rank_of_text]
    groups = (
        _gather_rows(audio_group.to(device, torch.int64), audio_sizes)
        if has_group[0]
        else torch.arange(sum(audio_sizes), device=device)
    )
    return GlobalBatch(_gather_rows(audio_z, audio_sizes), _gather_rows(text_z, text_sizes), index, groups)


def shared_generator(generator: torch.Generator | None, device: torch.device) -> torch.Generator | None:
    """The generator STL/SMM draw from: the caller's, else one that draws alike on every process."""
    if generator is not None or _world_size() == 1:
        return generator  # None on one process: torch's global generator, as always
    seed = torch.randint(2**62, (1,)).to(device)  # every rank draws (keeps their global RNGs in step)
    dist.broadcast(seed, src=0)
    return torch.Generator().manual_seed(int(seed.item()))


class Objective(nn.Module):
    """The one call shape of every objective: check and gather the batch (`global_batch`), then `score` it."""

    def forward(
        self, audio_z, text_z, text_audio_index, logit_scale=None, audio_group=None, generator=None
    ) -> torch.Tensor:
        return self.score(
            global_batch(audio_z, text_z, text_audio_index, audio_group), logit_scale, generator
        )

    def score(self, batch: GlobalBatch, logit_scale, generator: torch.Generator | None) -> torch.Tensor:
        raise NotImplementedError


class _Contrastive(Objective):
    """A softmax over texts per audio anchor; `symmetric` (CLIP form) averages in the text→audio direction."""

    def __init__(self, symmetric: bool = True) -> None:
        super().__init__()
        self.symmetric = symmetric

    def score(self, batch: GlobalBatch, logit_scale, generator: torch.Generator | None) -> torch.Tensor:
        loss, logits, text_targets = self.audio_to_text(batch, logit_scale)
        if self.symmetric:
            loss = (loss + F.cross_entropy(logits.T, text_targets)) / 2
        return loss

    def audio_to_text(
        self, batch: GlobalBatch, logit_scale
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The audio→text loss, its logits (anchors × texts) and each text's positive anchor (a column of them)."""
        raise NotImplementedError


class NTXentLoss(_Contrastive):
    """1-Text (thesis 4.4.1): each pair (audio of text m, text m) against the other pairs of the batch.

    Pairs of the same group other than the pair itself are masked out of the denominator (they are not
    negatives). Symmetric (CLIP) by default; `symmetric=False` keeps the thesis' audio→text form.
    """

    def audio_to_text(
        self, batch: GlobalBatch, logit_scale
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        index = batch.text_audio_index
        audio = F.normalize(batch.audio_z, dim=-1)[index]  # one audio row per pair
        text = F.normalize(batch.text_z, dim=-1)
        logits = logit_scale * audio @ text.T  # (M, M): pair m's audio against every pair's text
        eye = torch.eye(len(text), dtype=torch.bool, device=logits.device)
        logits = logits.masked_fill(batch.same_group()[index] & ~eye, float("-inf"))
        targets = torch.arange(len(text), device=logits.device)
        return F.cross_entropy(logits, targets), logits, targets


class IndependentPairsLoss(NTXentLoss):
    """IS (thesis 4.4.2): a track's three sentences become three independent (audio, sentence) pairs.

    The math is NT-Xent over pairs with same-group pairs masked; what differs from 1-Text is the batch
    (three sentences per track instead of one joined caption).
    """


class SupConLoss(_Contrastive):
    """SCL (thesis 4.4.2): each audio anchor against all texts, positives = the texts of its own row.

    Log-probabilities are averaged over the positives (SupCon's "out" form, so the scale does not grow with the
    number of sentences). Symmetric adds the text→audio direction, where each text has exactly one positive audio.
    Texts of other rows of the anchor's group are neither positives nor negatives (masked out).
    """

    def audio_to_text(
        self, batch: GlobalBatch, logit_scale
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits = (
            logit_scale * F.normalize(batch.audio_z, dim=-1) @ F.normalize(batch.text_z, dim=-1).T
        )  # (B, M)
        positives = batch.own()
        counts = positives.sum(1)
        if (counts == 0).any():
            raise ValueError("every audio in a SupCon batch needs at least one text of its own track")
        logits = logits.masked_fill(batch.same_group() & ~positives, float("-inf"))
        log_prob = logits.log_softmax(dim=1)
        loss = -log_prob.masked_fill(~positives, 0.0).sum(1).div(counts).mean()
        return loss, logits, batch.text_audio_index


def _positive_and_negative(batch: GlobalBatch, generator: torch.Generator | None):
    """Per audio row: one of its own texts and one text of another group, each sampled uniformly, and which rows
    have both (a batch of one group has none: no negative to sample)."""
    own, other_group = batch.own(), ~batch.same_group()
    usable = own.any(1) & other_group.any(1)
    generator = shared_generator(generator, batch.audio_z.device)
    unusable = ~usable[:, None]  # any column, only to keep the sampler defined; these rows are left out
    return (
        _sample_columns(own | unusable, generator),
        _sample_columns(other_group | unusable, generator),
        usable,
    )


def no_usable_pair(loss: torch.Tensor) -> torch.Tensor:
    """Mark a zero loss as "this batch had no (positive, negative) pair": callers count such batches instead of
    averaging them (`is_skipped_batch`). The zero stays connected to what it was computed from, so every
    process's backward sees the same parameters (DDP) and the gradients are zero."""
    loss = loss * 0.0
    loss.no_usable_pair = True
    return loss


def is_skipped_batch(loss: torch.Tensor | None) -> bool:
    """True for the loss of a batch STL or SMM could not score (one group only: no negative)."""
    return bool(getattr(loss, "no_usable_pair", False))


class _SampledPairs(Objective):
    """Per audio row one sampled positive and one sampled negative text (`_positive_and_negative`), then
    `score_pairs` on them; `usable` marks the rows that have both."""

    def score(self, batch: GlobalBatch, logit_scale, generator: torch.Generator | None) -> torch.Tensor:
        return self.score_pairs(batch, *_positive_and_negative(batch, generator))

    def score_pairs(
        self, batch: GlobalBatch, positive: torch.Tensor, negative: torch.Tensor, usable: torch.Tensor
    ) -> torch.Tensor:
        raise NotImplementedError


class StochasticTripletLoss(_SampledPairs):
    """STL (thesis 4.4.2): per audio, one positive sentence sampled uniformly from its own track and one negative
    sampled uniformly from the texts of other groups in the batch; hinge on the distance gap.

    Distances on L2-normalised z: cosine distance (1 - cos) or squared L2. `logit_scale` is unused.
    """

    def __init__(self, margin: float = 0.2, distance: str = "cosine") -> None:
        super().__init__()
        if distance not in ("cosine", "squared_l2"):
            raise ValueError(f"distance must be 'cosine' or 'squared_l2', got {distance!r}")
        self.margin = margin
        self.distance = distance

    def score_pairs(
        self, batch: GlobalBatch, positive: torch.Tensor, negative: torch.Tensor, usable: torch.Tensor
    ) -> torch.Tensor:
        audio = F.normalize(batch.audio_z, dim=-1)
        text = F.normalize(batch.text_z, dim=-1)
        cos_pos = (audio * text[positive]).sum(-1)
        cos_neg = (audio * text[negative]).sum(-1)
        scale = 1.0 if self.distance == "cosine" else 2.0  # ||a - t||^2 = 2 - 2 cos for unit vectors
        hinge = F.relu(scale * (cos_neg - cos_pos) + self.margin)
        return hinge[usable].mean() if usable.any() else no_usable_pair(hinge.sum())


class MatchingLoss(_SampledPairs):
    """SMM (thesis 4.4.3): a binary head on concatenated z embeddings says whether audio and text belong together.

    Every audio gets one true pair (a sentence of its own track, sampled uniformly) and one shuffled pair (a text of
    another group, sampled uniformly): exactly 1:1 positives and negatives; BCE-with-logits.
    """

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head = head

    def score_pairs(
        self, batch: GlobalBatch, positive: torch.Tensor, negative: torch.Tensor, usable: torch.Tensor
    ) -> torch.Tensor:
        texts = torch.cat([positive, negative])
        audio = torch.cat([batch.audio_z, batch.audio_z])
        logits = self.head(torch.cat([audio, batch.text_z[texts]], dim=-1)).squeeze(-1)
        if not usable.any():
            return no_usable_pair(logits.sum())
        labels = torch.cat([torch.ones(len(batch.audio_z)), torch.zeros(len(batch.audio_z))]).to(logits)
        keep = torch.cat([usable, usable])
        return F.binary_cross_entropy_with_logits(logits[keep], labels[keep])


class AudioGroupContrast(nn.Module):
    """Audio-audio SupCon: each audio row's positives are the other rows of its group in the global batch, every
    other group's rows its negatives (CLMR/COLA-style: two clips of one recording should embed alike). A row is an
    anchor when it has both; a batch without any anchor adds a connected zero."""

    def __init__(self, temperature: float) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(self, batch: GlobalBatch) -> torch.Tensor:
        z = F.normalize(batch.audio_z, dim=-1)
        itself = torch.eye(len(z), dtype=torch.bool, device=z.device)
        same_group = batch.audio_group[:, None] == batch.audio_group[None, :]
        positives = same_group & ~itself
        anchors = positives.any(1) & (~same_group).any(1)
        if not anchors.any():
            return z.sum() * 0.0
        logits = (z @ z.T / self.temperature).masked_fill(itself, float("-inf"))
        log_prob = logits.log_softmax(dim=1).masked_fill(~positives, 0.0)
        return -(log_prob.sum(1)[anchors] / positives.sum(1)[anchors]).mean()


class WithAudioContrast(Objective):
    """An objective plus `weight` x `AudioGroupContrast` on the same global batch; a batch the objective skips
    (one group) stays skipped."""

    def __init__(self, objective: Objective, weight: float, temperature: float) -> None:
        super().__init__()
        self.objective, self.weight, self.audio = objective, weight, AudioGroupContrast(temperature)

    def score(self, batch: GlobalBatch, logit_scale, generator: torch.Generator | None) -> torch.Tensor:
        loss = self.objective.score(batch, logit_scale, generator)
        return loss if is_skipped_batch(loss) else loss + self.weight * self.audio(batch)


def _sample_columns(allowed: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One column per row, uniformly among the allowed ones."""
    weights = allowed.float().cpu()
    return torch.multinomial(weights, 1, generator=generator).squeeze(1).to(allowed.device)


def build_loss(config, matching_head: nn.Module | None = None) -> Objective:
    """The loss a `MusicClipConfig` asks for: its objective, plus the audio-audio term when weighted."""
    objective = _build_objective(config, matching_head)
    if config.uses_audio_contrast:
        return WithAudioContrast(objective, config.audio_contrast_weight, config.audio_contrast_temperature)
    return objective


def _build_objective(config, matching_head: nn.Module | None) -> Objective:
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
