"""Seeded, resumable data loading.

Epoch e visits the permutation drawn from seed + e (or the natural order without shuffling); a
run restarted at (epoch, step) skips the first step·batch_size positions of that epoch, so it sees
exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from core.data.collate import collate


class EpochSampler(Sampler[int]):
    """Indices of one epoch (seeded permutation), optionally sharded by rank, from a start offset."""

    def __init__(
        self,
        length: int,
        shuffle: bool,
        seed: int,
        epoch: int = 0,
        start: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank={rank}, world_size={world_size}: need 0 ≤ rank < world_size.")
        self.length, self.shuffle, self.seed = length, shuffle, seed
        self.rank, self.world_size = rank, world_size
        self.epoch, self.start = epoch, start

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Move to `epoch`, beginning at position `start` (in samples) of this rank's order."""
        self.epoch, self.start = epoch, start

    def order(self) -> list[int]:
        """This rank's full index order for the current epoch."""
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            perm = torch.randperm(self.length, generator=g).tolist()
        else:
            perm = list(range(self.length))
        usable = self.length - self.length % self.world_size if self.world_size > 1 else self.length
        return perm[:usable][self.rank :: self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self.order()[self.start :])

    def __len__(self) -> int:
        return max(len(self.order()) - self.start, 0)


def _seed_worker(worker_id: int) -> None:
    import random

    import numpy as np

    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


def make_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    seed: int,
    num_workers: int = 0,
    drop_last: bool = False,
    *,
    epoch: int = 0,
    skip_batches: int = 0,
    rank: int = 0,
    world_size: int = 1,
    collate_fn: Any = collate,
) -> DataLoader:
    """DataLoader over `dataset` positioned at (epoch, skip_batches); see the module doc.

    Advance epochs with `set_epoch(loader, epoch)`. Worker RNGs derive from a generator seeded
    with `seed`, so random augmentations (if any) repeat too.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}: must be ≥ 1.")
    sampler = EpochSampler(
        len(dataset), shuffle, seed, epoch, skip_batches * batch_size, rank, world_size
    )
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        drop_last=drop_last,
        collate_fn=collate_fn,
        generator=torch.Generator().manual_seed(seed),
        worker_init_fn=_seed_worker if num_workers > 0 else None,
        persistent_workers=False,
    )


def set_epoch(loader: DataLoader, epoch: int, skip_batches: int = 0) -> None:
    """Point a `make_loader` loader at `epoch`, skipping its first `skip_batches` batches."""
    sampler = loader.sampler
    if not isinstance(sampler, EpochSampler):
        raise TypeError("set_epoch needs a loader built by make_loader")
    sampler.set_epoch(epoch, skip_batches * (loader.batch_size or 1))
