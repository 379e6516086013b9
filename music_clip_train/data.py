"""Load and validate a MusicCLIP dataset folder (DESIGN.md "Dataset folder") and hold its mels in memory.

Training never decodes audio: it reads the stored `fe.log_mel` outputs once into a list of arrays (the bundled
corpus is a few hundred MB at most) and windows them per batch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Self

import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict, get_dataset_config_names, load_dataset

from music_clip_common.hashing import local_datasets_cache

from .errors import InputError

# A Hub dataset is only ever asked for explicitly (the Space's rule too, space/config.py): anything else is a
# local folder, so a missing `data/music21-quick` is "not found" instead of the Hub dataset of that name.
HUB_PREFIX = "hub:"
COMMON_COLUMNS = ("track_id", "group_id", "mel", "mel_length")
CAPTION_COLUMNS = COMMON_COLUMNS + ("caption", "sentences")
GENRE_COLUMNS = COMMON_COLUMNS + ("genre",)
SENTENCES_PER_TRACK = 3


def hub_dataset(dataset: str) -> tuple[str, str | None] | None:
    """(repo id, revision) of `hub:owner/name[@revision]`; None for a local folder."""
    if not dataset.startswith(HUB_PREFIX):
        return None
    repo, _, revision = dataset[len(HUB_PREFIX) :].partition("@")
    return repo, revision or None


def dataset_location(dataset: str) -> tuple[str, str | None]:
    """What `datasets` loads: (folder or repo id, revision); a local folder must exist."""
    hub = hub_dataset(dataset)
    if hub is not None:
        return hub
    if not Path(dataset).is_dir():
        raise InputError(
            f"dataset {dataset!r} not found (no such folder; a Hub dataset is written {HUB_PREFIX}owner/name"
            "[@revision])"
        )
    return dataset, None


def _config_names(dataset: str) -> list[str]:
    name, revision = dataset_location(dataset)
    try:
        return get_dataset_config_names(name, revision=revision)
    except Exception as err:  # datasets raises several types for a missing/unreadable folder or repo
        raise InputError(f"cannot read dataset {dataset!r}: {err}") from None


def _load_config(dataset: str, config: str) -> DatasetDict:
    names = _config_names(dataset)
    if config not in names:
        raise InputError(
            f"dataset {dataset!r} has no {config!r} config (it has: {', '.join(names) or 'none'}); "
            "build it with build_dataset.py, which writes both 'captions' and 'genres'"
        )
    try:
        name, revision = dataset_location(dataset)
        cache_dir = None if hub_dataset(dataset) else str(local_datasets_cache(Path(name)))
        return load_dataset(name, config, revision=revision, cache_dir=cache_dir)
    except ValueError as err:  # e.g. a split file with no rows: "Instruction 'test' corresponds to no data"
        raise InputError(
            f"dataset {dataset!r} config {config!r} could not be loaded: {err} (a split with no rows?)"
        ) from None


def _check_columns(split: Dataset, needed: tuple[str, ...], where: str) -> None:
    missing = [c for c in needed if c not in split.column_names]
    if missing:
        raise InputError(
            f"{where} lacks column(s) {', '.join(missing)} (has: {', '.join(split.column_names)})"
        )
    if len(split) == 0:
        raise InputError(f"{where} is empty")


def _mels(split: Dataset, n_mels: int | None, where: str) -> list[np.ndarray]:
    mels = [
        np.asarray(m, dtype=np.float32) for m in split.select_columns(["mel"]).with_format("numpy")["mel"]
    ]
    for index, mel in enumerate(mels):
        if mel.ndim != 2 or mel.shape[0] == 0 or (n_mels is not None and mel.shape[1] != n_mels):
            raise InputError(
                f"{where} row {index}: mel must be (T > 0, {n_mels or 'n_mels'}), got {mel.shape}"
            )
    return mels


@dataclass
class TrackRows:
    """Columns of one value per track (the common columns in memory); a subclass adds its own columns."""

    track_ids: list[str]
    group_ids: list[str]
    mels: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.track_ids)

    def subset(self, indices: list[int] | np.ndarray) -> Self:
        """The rows at `indices`, in that order, in every column."""
        pick = [int(i) for i in indices]
        return type(self)(**{f.name: _rows(getattr(self, f.name), pick) for f in fields(self)})


def _rows(column: list | np.ndarray, pick: list[int]) -> list | np.ndarray:
    return column[pick] if isinstance(column, np.ndarray) else [column[i] for i in pick]


@dataclass
class CaptionData(TrackRows):
    """The captions config in memory: one mel, one joined caption and three sentences per track."""

    captions: list[str]
    sentences: list[list[str]]

    @classmethod
    def union(cls, parts: dict[str, CaptionData]) -> CaptionData:
        """Several datasets' captions as one; ids become `dataset::id`, so two datasets' groups never merge."""
        if len(parts) == 1:
            return next(iter(parts.values()))
        return cls(
            [f"{name}::{t}" for name, part in parts.items() for t in part.track_ids],
            [f"{name}::{g}" for name, part in parts.items() for g in part.group_ids],
            [m for part in parts.values() for m in part.mels],
            [c for part in parts.values() for c in part.captions],
            [s for part in parts.values() for s in part.sentences],
        )


@dataclass
class GenreSplit(TrackRows):
    labels: np.ndarray


@dataclass
class GenreData:
    train: GenreSplit
    test: GenreSplit
    label_names: list[str]

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.label_names))

    @property
    def label2id(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.label_names)}


def load_captions(dataset: str, n_mels: int | None = None) -> CaptionData:
    """The captions config's train split, validated (columns, three sentences per track, mel shapes)."""
    splits = _load_config(dataset, "captions")
    if "train" not in splits:
        raise InputError(f"dataset {dataset!r} captions config has no 'train' split (has: {list(splits)})")
    split = splits["train"]
    _check_columns(split, CAPTION_COLUMNS, f"{dataset!r} captions/train")
    text = split.select_columns(["track_id", "group_id", "caption", "sentences"]).to_dict()
    for track_id, sentences in zip(text["track_id"], text["sentences"]):
        if len(sentences) != SENTENCES_PER_TRACK or not all(s and s.strip() for s in sentences):
            raise InputError(
                f"{dataset!r} captions/train track {track_id!r} has {len(sentences)} sentences "
                f"(need {SENTENCES_PER_TRACK} non-empty ones)"
            )
    mels = _mels(split, n_mels, f"{dataset!r} captions/train")
    groups = [g or t for g, t in zip(text["group_id"], text["track_id"])]
    return CaptionData(text["track_id"], groups, mels, text["caption"], [list(s) for s in text["sentences"]])


def _genre_split(split: Dataset, n_mels: int | None, where: str) -> GenreSplit:
    _check_columns(split, GENRE_COLUMNS, where)
    meta = split.select_columns(["track_id", "group_id", "genre"]).to_dict()
    groups = [g or t for g, t in zip(meta["group_id"], meta["track_id"])]
    return GenreSplit(
        meta["track_id"], groups, _mels(split, n_mels, where), np.asarray(meta["genre"], np.int64)
    )


def load_genres(dataset: str, n_mels: int | None = None) -> GenreData:
    """The genres config's train and fixed test split, validated (ClassLabel, both splits non-empty)."""
    splits = _load_config(dataset, "genres")
    for name in ("train", "test"):
        if name not in splits:
            raise InputError(f"dataset {dataset!r} genres config has no {name!r} split (has: {list(splits)})")
    feature = splits["train"].features.get("genre")
    if not isinstance(feature, ClassLabel):
        raise InputError(f"{dataset!r} genres: column 'genre' must be a ClassLabel, got {feature!r}")
    data = GenreData(
        _genre_split(splits["train"], n_mels, f"{dataset!r} genres/train"),
        _genre_split(splits["test"], n_mels, f"{dataset!r} genres/test"),
        list(feature.names),
    )
    if len(set(data.train.labels.tolist())) < 2:
        raise InputError(f"{dataset!r} genres/train has fewer than two classes; nothing to classify")
    return data


def dataset_feature_config(dataset: str) -> dict | None:
    """The feature-extractor config the builder used for the stored mels, if the folder has one."""
    path = Path(dataset) / "feature_extractor" / "preprocessor_config.json"
    return json.loads(path.read_text()) if path.is_file() else None


MEL_KEYS = ("sampling_rate", "n_fft", "hop_length", "feature_size")


def shared_feature_config(datasets: list[str]) -> dict | None:
    """The front end several datasets' stored mels share (the first recorded one); mels of different front ends
    cannot train one model, so any disagreement is refused. A folder that records none is checked by mel shape."""
    first: tuple[str, dict] | None = None
    for dataset in datasets:
        config = dataset_feature_config(dataset)
        if config is None:
            continue
        if first is None:
            first = dataset, config
            continue
        diffs = [
            f"{k}: {first[1].get(k)} vs {config.get(k)}" for k in MEL_KEYS if first[1].get(k) != config.get(k)
        ]
        if diffs:
            raise InputError(
                f"datasets {first[0]!r} and {dataset!r} were built with different mel front ends "
                f"({'; '.join(diffs)}); rebuild one with the other's settings to pretrain on both"
            )
    return first[1] if first else None


def check_mel_config(dataset_fe: dict | None, model_fe: dict, where: str) -> None:
    """Stored mels must come from the same front end as the model's extractor (else features silently differ)."""
    if dataset_fe is None:
        return
    diffs = [
        f"{k}: data {dataset_fe.get(k)} vs model {model_fe.get(k)}"
        for k in MEL_KEYS
        if k in dataset_fe and dataset_fe.get(k) != model_fe.get(k)
    ]
    if diffs:
        raise InputError(f"{where}: the dataset's mels were made with another front end ({'; '.join(diffs)})")
