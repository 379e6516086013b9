"""Dataset folder writer: `datasets` Features, Parquet shards per config/split, and the grouped splits.

Splits never cut a group (`group_id`: a piece, a work, a tune family):
- captions vs genres: tracks the source did not assign are split by group, per class, with sklearn's
  `GroupShuffleSplit` (`captions_fraction` of each class' groups go to captions; unlabelled tracks go to
  captions, which needs no label). The two configs never share a track or a group.
- genres test split: sklearn `StratifiedGroupKFold` (shuffled, seeded); one fold is the test split, with the
  number of folds chosen so the fold is about `test_size` of the clips.
"""

from __future__ import annotations

import os
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from datasets import Array2D, Audio, ClassLabel, Dataset, DatasetInfo, Features, List, SplitInfo, Value
from datasets.splits import SplitDict
from sklearn.model_selection import GroupShuffleSplit, StratifiedGroupKFold

ROWS_PER_SHARD = 2000
MAX_SHARD_BYTES = 300 * 2**20
ROWS_PER_ROW_GROUP = 64


def base_features(n_mels: int) -> dict:
    return {
        "track_id": Value("string"),
        "group_id": Value("string"),
        "source": Value("string"),
        "audio": Audio(),
        "mel": Array2D((None, n_mels), "float32"),
        "mel_length": Value("int32"),
        "duration_s": Value("float32"),
        "title": Value("string"),
        "artist": Value("string"),
        "tags": List(Value("string")),
        "lyrics": Value("string"),
        "metadata": Value("string"),
    }


def captions_features(n_mels: int) -> Features:
    return Features(
        {
            **base_features(n_mels),
            "caption": Value("string"),
            "sentences": List(Value("string")),
            "caption_source": Value("string"),
            "caption_prompt": Value("string"),
            "caption_model": Value("string"),
            "caption_temperature": Value("float32"),
            "caption_raw": Value("string"),
        }
    )


def genres_features(n_mels: int, genre_names: Sequence[str]) -> Features:
    return Features({**base_features(n_mels), "genre": ClassLabel(names=list(genre_names))})


def _group_labels(labels: Sequence[str | None], groups: Sequence[str]) -> dict[str, str | None]:
    """A group's label is its tracks' majority label (None if no track is labelled)."""
    votes: dict[str, Counter] = defaultdict(Counter)
    for label, group in zip(labels, groups, strict=True):
        votes[group][label] += 1
    out: dict[str, str | None] = {}
    for group, counter in votes.items():
        labelled = Counter({k: v for k, v in counter.items() if k is not None})
        out[group] = max(sorted(labelled), key=lambda k: labelled[k]) if labelled else None
    return out


def split_roles(
    labels: Sequence[str | None], groups: Sequence[str], captions_fraction: float, seed: int
) -> dict[str, str]:
    """group → "captions" | "genres" for groups with no role from the source (see module docstring)."""
    group_label = _group_labels(labels, groups)
    roles: dict[str, str] = {}
    by_label: dict[str, list[str]] = defaultdict(list)
    for group, label in group_label.items():
        if label is None:
            roles[group] = "captions"
        else:
            by_label[label].append(group)
    for label in sorted(by_label):
        members = sorted(by_label[label])
        if captions_fraction <= 0 or captions_fraction >= 1 or len(members) < 2:
            role = "captions" if captions_fraction >= 1 else "genres"
            roles.update(dict.fromkeys(members, role))
            continue
        splitter = GroupShuffleSplit(n_splits=1, test_size=captions_fraction, random_state=seed)
        _, caption_idx = next(splitter.split(np.zeros(len(members)), groups=members))
        chosen = {members[i] for i in caption_idx}
        roles.update({g: "captions" if g in chosen else "genres" for g in members})
    return roles


def test_mask(labels: Sequence[str], groups: Sequence[str], test_size: float, seed: int) -> np.ndarray:
    """True for clips in the fixed, seeded, stratified, grouped test split.

    `test_size` < 1 is a fraction of the clips, >= 1 a number of clips. Classes with a single group stay in
    train (a grouped split cannot put them on both sides).
    """
    n = len(labels)
    mask = np.zeros(n, dtype=bool)
    if n == 0 or test_size <= 0:
        return mask
    fraction = test_size if test_size < 1 else test_size / n
    groups_per_class: dict[str, set[str]] = defaultdict(set)
    for label, group in zip(labels, groups, strict=True):
        groups_per_class[label].add(group)
    eligible = np.array([len(groups_per_class[label]) >= 2 for label in labels])
    idx = np.flatnonzero(eligible)
    n_groups = len({groups[i] for i in idx})
    if n_groups < 2 or fraction >= 1:
        return mask
    # sklearn needs a class with at least n_splits groups; tiny sets get a larger test share (still grouped).
    largest_class = max(len(groups_per_class[labels[i]]) for i in idx)
    n_splits = int(min(max(2, round(1 / fraction)), n_groups, largest_class))
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    y = [labels[i] for i in idx]
    g = [groups[i] for i in idx]
    with warnings.catch_warnings():
        # A class with fewer groups than folds gets no test clip in some folds: acceptable for fold 0 here.
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        _, test_idx = next(splitter.split(np.zeros(len(idx)), y, g))
    mask[idx[test_idx]] = True
    return mask


def write_split(
    rows: Iterable[dict],
    features: Features,
    folder: Path,
    split: str,
    build_id: str,
    rows_per_shard: int = ROWS_PER_SHARD,
    max_shard_bytes: int = MAX_SHARD_BYTES,
    progress: Callable[[int], None] | None = None,
) -> list[Path]:
    """Rows → `folder/{split}-{build_id}-0000i-of-0000N.parquet`, a shard at most `rows_per_shard` rows or about
    `max_shard_bytes` of audio and mels. An empty split writes no shard (`datasets` cannot load an empty split),
    and the card leaves it out of `configs:`.

    Nothing of an earlier build is touched: the names are new (`build_id`), the card lists the exact files, so
    writing the card commits this build and `remove_stale_files` deletes the old shards after it. A build killed
    before that leaves the old card with all of its shards."""
    folder.mkdir(parents=True, exist_ok=True)
    parts: list[Path] = []
    buffer: list[dict] = []
    size = 0

    def flush() -> None:
        part = folder / f".{split}-{build_id}-part{len(parts):05d}.parquet.tmp"
        data = {name: [row[name] for row in buffer] for name in features}
        # Small row groups: audio rows are large, and readers (streaming, the Hub viewer) load a group at once.
        Dataset.from_dict(data, features=features).to_parquet(str(part), batch_size=ROWS_PER_ROW_GROUP)
        parts.append(part)
        if progress is not None:
            progress(len(buffer))
        buffer.clear()

    for row in rows:
        buffer.append(row)
        size += len(row["audio"]["bytes"]) + row["mel"].nbytes
        if len(buffer) >= rows_per_shard or size >= max_shard_bytes:
            flush()
            size = 0
    if buffer:
        flush()
    final = [folder / f"{split}-{build_id}-{i:05d}-of-{len(parts):05d}.parquet" for i in range(len(parts))]
    for part, path in zip(parts, final, strict=True):
        _fsync_file(part)  # the card will name these files: their bytes must be on disk before it is
        part.replace(path)
    return final


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def remove_stale_files(folders: Iterable[Path], keep: Iterable[Path]) -> list[Path]:
    """After the card is written: delete the shards it does not list and any temp part of a killed build.

    Only under the builder's folder lock, so no other builder's temp parts are in these folders."""
    wanted = {Path(p).resolve() for p in keep}
    removed = []
    for folder in folders:
        stale = [p for p in folder.glob("*.parquet") if p.resolve() not in wanted]
        for path in stale + list(folder.glob(".*.tmp")):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def dataset_info_yaml(config_name: str, features: Features, shards: dict[str, list[Path]]) -> dict:
    """The card's `dataset_info` entry for one config: features, and rows and bytes per split.

    `datasets` hashes this into its cache key for a local folder, so a rebuilt folder (new counts or sizes)
    is never answered from a stale cache of the previous build.
    """
    splits = SplitDict()
    total = 0
    for split, paths in shards.items():
        if not paths:
            continue
        size = sum(p.stat().st_size for p in paths)
        rows = sum(pq.ParquetFile(p).metadata.num_rows for p in paths)
        splits.add(SplitInfo(name=split, num_bytes=size, num_examples=rows))
        total += size
    info = DatasetInfo(features=features, splits=splits, config_name=config_name)
    info.download_size = info.dataset_size = total
    return info._to_yaml_dict()
