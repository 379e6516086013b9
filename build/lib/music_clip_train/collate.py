"""Batches per objective, built from stored mels (never decoded audio).

All objectives embed each track's audio once. 1-Text pairs it with the joined caption; IS, SCL, STL and SMM
send the track's three sentences and repeat the audio row through `text_audio_index` (the losses decide how to
use them: IS as three pairs, SCL as three positives, STL/SMM sample one positive and one negative).
Each row carries its group (`audio_group`, int64 from the group id): the losses never treat two rows of one track
or piece as negatives. With a frozen text tower the texts are not tokenized: the batch carries `text_index` into a cache of pooled
text-tower outputs, computed once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import numpy as np
import torch

from .data import SENTENCES_PER_TRACK, CaptionData, GenreSplit

OBJECTIVE_LABELS = {
    "none": "Audio Encoder",
    "ntxent": "1-Text",
    "independent": "IS",
    "supcon": "SCL",
    "triplet": "STL",
    "matching": "SMM",
}
OBJECTIVES = tuple(k for k in OBJECTIVE_LABELS if k != "none")


def texts_per_track(objective: str) -> int:
    return 1 if objective == "ntxent" else SENTENCES_PER_TRACK


def flat_texts(data: CaptionData, objective: str) -> list[str]:
    """Every text of the objective in cache order: track i's texts sit at i*k ... i*k + k-1."""
    if texts_per_track(objective) == 1:
        return list(data.captions)
    return [sentence for sentences in data.sentences for sentence in sentences]


def group_key(group_id: str) -> int:
    """A group id as int64, the same in every process and run (Python's `hash` of a str is salted per process)."""
    return int.from_bytes(
        hashlib.blake2b(group_id.encode("utf-8"), digest_size=8).digest(), "little", signed=True
    )


class PretrainCollator:
    """Track indices → model inputs for one objective."""

    def __init__(
        self,
        data: CaptionData,
        objective: str,
        feature_extractor,
        tokenizer=None,
        max_length=128,
        cached_text: bool = False,
    ) -> None:
        self.data = data
        self.per_track = texts_per_track(objective)
        self.texts = flat_texts(data, objective)
        self.groups = [group_key(g) for g in data.group_ids]
        self.feature_extractor = feature_extractor
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.cached_text = cached_text

    def __call__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        batch = dict(self.feature_extractor.window([self.data.mels[i] for i in indices]))
        text_index = torch.tensor([i * self.per_track + j for i in indices for j in range(self.per_track)])
        batch["text_audio_index"] = torch.arange(len(indices)).repeat_interleave(self.per_track)
        batch["audio_group"] = torch.tensor([self.groups[i] for i in indices], dtype=torch.int64)
        if self.cached_text:
            batch["text_index"] = text_index
        else:
            tokens = self.tokenizer(
                [self.texts[int(t)] for t in text_index],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            )
            batch.update({k: v for k, v in tokens.items() if k in ("input_ids", "attention_mask")})
        return batch


class ClassificationCollator:
    def __init__(self, split: GenreSplit, feature_extractor) -> None:
        self.split = split
        self.feature_extractor = feature_extractor

    def __call__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        batch = dict(self.feature_extractor.window([self.split.mels[i] for i in indices]))
        batch["labels"] = torch.as_tensor(self.split.labels[list(indices)])
        return batch


class EpochBatchSampler:
    """Seeded shuffled batches that depend only on (seed, epoch): a resumed run sees the same order.

    With K processes (`num_replicas`) the global batch is K x `batch_size` rows, split into K near-equal parts
    without padding: rank r gets part r, so no row is ever duplicated to even out ranks and every rank takes the
    same number of steps. A last global batch under 2 rows per rank is merged into the one before (contrastive
    losses need two tracks). `start` skips the first batches of the epoch (a mid-epoch resume).
    """

    def __init__(
        self,
        size: int,
        batch_size: int,
        seed: int,
        shuffle: bool = True,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        self.size, self.batch_size, self.seed, self.shuffle = size, batch_size, seed, shuffle
        self.num_replicas, self.rank = num_replicas, rank
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def global_batches(self) -> list[list[int]]:
        order = np.arange(self.size)
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(self.size)
        step = self.batch_size * self.num_replicas
        chunks = [order[i : i + step].tolist() for i in range(0, self.size, step)]
        if len(chunks) > 1 and len(chunks[-1]) < 2 * self.num_replicas:
            chunks[-2].extend(chunks.pop())
        return chunks

    def batches(self) -> list[list[int]]:
        """This rank's part of every global batch."""
        if self.num_replicas == 1:
            return self.global_batches()
        return [np.array_split(c, self.num_replicas)[self.rank].tolist() for c in self.global_batches()]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches()[self.start :])

    def __len__(self) -> int:
        return len(self.global_batches())
