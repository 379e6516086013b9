"""Few-shot subsets (nested, stratified, seeded), validation carving and the captions hold-out.

Nested: for one seed, the subset of size N is the first N of one fixed ordering, so N=160 contains N=48.
Stratified: the ordering interleaves classes by their fractional position, so every prefix keeps the class
proportions of the training split (within one example per class).
Units (`N_UNITS`): N counts clips (the thesis' examples; a clip-level dataset's clips come by whole tracks), or
labelled tracks, balanced across classes (`balanced_tracks`: k tracks per class, what a user labelling whole
recordings pays for).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import GroupShuffleSplit, StratifiedGroupKFold

from .errors import InputError

# What a training size N counts (`--n-unit`), with the words reports use for it, and its plural in messages.
N_UNITS = {
    "clips": "N counts clips, drawn by whole tracks",
    "tracks": "N counts labelled tracks, balanced across classes (every clip of a chosen track is used)",
}
N_UNIT_NOUNS = {"clips": "examples", "tracks": "tracks"}


def nested_order(labels: np.ndarray, seed: int, groups: list[str] | None = None) -> np.ndarray:
    """One stratified ordering of all examples; prefixes are the nested subsets.

    With `groups` (clips of one track share one), whole groups are ordered (stratified by their majority label)
    and each group's examples follow each other, so a prefix of N clips comes from as few tracks as whole tracks
    allow (only its last track may be cut). With one example per group this is the ungrouped ordering.
    """
    if groups is None:
        return _stratified_order(labels, seed)
    members, group_labels = _group_members(labels, groups)
    return np.asarray([i for g in _stratified_order(group_labels, seed) for i in members[g]], dtype=np.int64)


def balanced_tracks(labels: np.ndarray, seed: int, groups: list[str]) -> list[list[int]]:
    """Tracks (groups, each its examples' indices) in one nested order that is balanced across classes: every
    class's first track (in a random class order), then every class's second, and so on, so the first k × C
    tracks hold k of each of the C classes while every class has k (a class out of tracks is skipped)."""
    members, group_labels = _group_members(labels, groups)
    rng = np.random.default_rng(seed)
    keys = np.empty(len(members), dtype=np.float64)
    for label in np.unique(group_labels):
        tracks = rng.permutation(np.flatnonzero(group_labels == label))
        keys[tracks] = np.arange(len(tracks)) + rng.uniform(size=len(tracks))  # round k: keys in [k, k + 1)
    return [members[g] for g in np.argsort(keys, kind="stable")]


def _group_members(labels: np.ndarray, groups: list[str]) -> tuple[list[list[int]], np.ndarray]:
    """Each group's example indices (groups in order of first appearance) and its majority label."""
    names, first, codes = np.unique(np.asarray(groups), return_index=True, return_inverse=True)
    by_appearance = np.argsort(first, kind="stable")  # group k = the k-th group to appear
    rank = np.empty(len(names), dtype=np.int64)
    rank[by_appearance] = np.arange(len(names))
    members: list[list[int]] = [[] for _ in names]
    for index, code in enumerate(codes):
        members[rank[code]].append(index)
    return members, np.asarray([_majority(labels[m]) for m in members])


def _majority(values: np.ndarray):
    kinds, counts = np.unique(values, return_counts=True)
    return kinds[np.argmax(counts)]


def _stratified_order(labels: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    keys = np.empty(len(labels), dtype=np.float64)
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        # k-th member of a class of size c sits at (k + u) / c: classes interleave in proportion.
        keys[members] = (np.arange(len(members)) + rng.uniform(size=len(members))) / len(members)
    return np.argsort(keys, kind="stable")


@dataclass
class SizePlan:
    requested: int
    used: int

    @property
    def capped(self) -> bool:
        return self.used < self.requested


def plan_sizes(sizes: list[int], available: int) -> list[SizePlan]:
    """Each requested N capped at what the training split has (the cap is reported, never hidden)."""
    if not sizes:
        raise InputError("no training sizes given")
    bad = [n for n in sizes if n < 2]
    if bad:
        raise InputError(f"training sizes must be >= 2, got {bad}")
    return [SizePlan(n, min(n, available)) for n in sorted(set(sizes))]


def carve_validation(
    labels: np.ndarray, groups: list[str], fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split a training subset into (fit, validation) indices: grouped, stratified when the classes allow."""
    n = len(labels)
    n_splits = max(2, round(1 / fraction))
    group_ids = np.unique(groups, return_inverse=True)[1]
    counts = np.bincount(np.unique(labels, return_inverse=True)[1])
    if n < 4 or len(np.unique(group_ids)) < 2:
        raise InputError(f"a training subset of {n} example(s) is too small to carve a validation part from")
    if counts.min() >= n_splits and len(np.unique(group_ids)) >= n_splits:
        splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        fit, val = next(splitter.split(np.zeros(n), labels, group_ids))
    else:  # too few per class for stratified folds: a grouped random split still keeps val out of fit
        splitter = GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
        fit, val = next(splitter.split(np.zeros(n), labels, group_ids))
    if len(val) == 0 or len(fit) == 0:
        raise InputError(f"cannot carve a validation part from {n} examples")
    return np.sort(fit), np.sort(val)


def holdout_split(groups: list[str], fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Captions (train, held-out) indices by group: no piece is in both."""
    if len(set(groups)) < 2:
        raise InputError("the captions config needs at least two groups to hold one out for evaluation")
    splitter = GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
    train, held = next(splitter.split(np.zeros(len(groups)), groups=groups))
    return np.sort(train), np.sort(held)
