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

import torch

from .data import SENTENCES_PER_TRACK, CaptionData, GenreSplit
from .sampler import EpochBatchSampler  # noqa: F401  (its home before sampler.py; tests import it here)

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
