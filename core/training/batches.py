"""Deterministic, resumable batch order: step s always maps to the same clips.

Epoch e uses a permutation seeded by (seed, e); step s is batch s mod (clips // global batch) of
epoch s // (clips // global batch). A restarted run therefore sees exactly the batches an
uninterrupted run would, and under DDP rank r takes its slice of each global batch.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler


class ResumableBatchSampler(Sampler[list[int]]):
    def __init__(
        self,
        num_items: int,
        batch_size: int,
        seed: int,
        start_step: int = 0,
        total_steps: int | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.global_batch = batch_size * world_size
        if num_items < self.global_batch:
            raise ValueError(
                f"the training set has {num_items} clips, fewer than one global batch "
                f"({batch_size} × {world_size} ranks). Fix: lower train.batch_size or add data."
            )
        self.num_items = num_items
        self.batch_size = batch_size
        self.seed = seed
        self.start_step = start_step
        self.total_steps = total_steps
        self.rank = rank
        self.steps_per_epoch = num_items // self.global_batch

    def indices(self, step: int) -> list[int]:
        epoch, offset = divmod(step, self.steps_per_epoch)
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        perm = torch.randperm(self.num_items, generator=gen)
        start = offset * self.global_batch + self.rank * self.batch_size
        return perm[start : start + self.batch_size].tolist()

    def __iter__(self) -> Iterator[list[int]]:
        step = self.start_step
        while self.total_steps is None or step < self.total_steps:
            yield self.indices(step)
            step += 1

    def __len__(self) -> int:
        if self.total_steps is None:
            raise TypeError("an endless sampler has no length")
        return max(0, self.total_steps - self.start_step)


def to_device(batch: dict, device: torch.device) -> dict:
    """Tensors of a collated batch moved to `device` (strings and lists stay)."""
    return {
        k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()
    }


def train_loader(
    dataset: Dataset,
    collate,
    batch_size: int,
    seed: int,
    start_step: int,
    total_steps: int,
    num_workers: int,
    rank: int = 0,
    world_size: int = 1,
) -> DataLoader:
    sampler = ResumableBatchSampler(
        len(dataset), batch_size, seed, start_step, total_steps, rank, world_size
    )
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=collate,
        num_workers=num_workers,
        persistent_workers=False,
    )


def eval_loader(dataset: Dataset, collate, batch_size: int, num_workers: int) -> DataLoader:
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=False, collate_fn=collate, num_workers=num_workers
    )
