"""The batch order every training run uses (torch and numpy only: the GPU check imports it without `datasets`)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def paired_order(groups: list[str], rng: np.random.Generator) -> np.ndarray:
    """All rows once, in 2-row units: two rows of one group where the group has two left, else two leftover rows
    of different groups (an odd total's last row comes last). Any even batch size then keeps every pair of a group
    in one batch: the positives of the audio-audio term."""
    by_group: dict[str, list[int]] = {}
    for row in rng.permutation(len(groups)).tolist():
        by_group.setdefault(groups[row], []).append(row)
    pairs = [rows[i : i + 2] for rows in by_group.values() for i in range(0, len(rows) - 1, 2)]
    leftovers = [rows[-1] for rows in by_group.values() if len(rows) % 2]
    units = pairs + [leftovers[i : i + 2] for i in range(0, len(leftovers) - 1, 2)]
    # An odd total's last row goes last, so it shifts no pair across a batch boundary.
    odd_row = leftovers[-1:] if len(leftovers) % 2 else []
    order = [row for u in rng.permutation(len(units)).tolist() for row in units[u]]
    return np.array(order + odd_row, np.int64)


class EpochBatchSampler:
    """Seeded shuffled batches that depend only on (seed, epoch): a resumed run sees the same order.

    With K processes (`num_replicas`) the global batch is K x `batch_size` rows, split into K near-equal parts
    without padding: rank r gets part r, so no row is ever duplicated to even out ranks and every rank takes the
    same number of steps. A last global batch under 2 rows per rank is merged into the one before (contrastive
    losses need two tracks). `start` skips the first batches of the epoch (a mid-epoch resume). With `groups`
    (one id per row) every epoch, shuffled or not, is a `paired_order` seeded like the shuffle, and the global
    batch must be even.
    """

    def __init__(
        self,
        size: int,
        batch_size: int,
        seed: int,
        shuffle: bool = True,
        num_replicas: int = 1,
        rank: int = 0,
        groups: list[str] | None = None,
    ) -> None:
        if groups is not None and len(groups) != size:
            raise ValueError(f"groups must name the group of each of the {size} rows, got {len(groups)}")
        if groups is not None and batch_size * num_replicas % 2:
            raise ValueError(f"paired batches need an even global batch, got {batch_size} x {num_replicas}")
        self.size, self.batch_size, self.seed, self.shuffle = size, batch_size, seed, shuffle
        self.groups = groups
        self.num_replicas, self.rank = num_replicas, rank
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def global_batches(self) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        if self.groups is not None:
            order = paired_order(self.groups, rng)
        else:
            order = rng.permutation(self.size) if self.shuffle else np.arange(self.size)
        starts = self._batch_starts()
        return [order[a:b].tolist() for a, b in zip(starts, [*starts[1:], self.size])]

    def _batch_starts(self) -> list[int]:
        """Where each global batch starts in the epoch's order; a last one under 2 rows per rank is merged into
        the one before (contrastive losses need two tracks)."""
        starts = list(range(0, self.size, self.batch_size * self.num_replicas))
        if len(starts) > 1 and self.size - starts[-1] < 2 * self.num_replicas:
            starts.pop()
        return starts

    def batches(self) -> list[list[int]]:
        """This rank's part of every global batch."""
        if self.num_replicas == 1:
            return self.global_batches()
        return [np.array_split(c, self.num_replicas)[self.rank].tolist() for c in self.global_batches()]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches()[self.start :])

    def __len__(self) -> int:
        """The number of global batches, without drawing the order (the loop asks every step)."""
        return len(self._batch_starts())
