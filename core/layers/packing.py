"""Physical removal of pruned patches: survivors of every frame packed into shared rows.

After an in-ViT reducer decides which windows survive, the remaining ViT blocks run on survivors only.
Linear layers run on the flat list of surviving tokens (no padding at all); attention runs on rows of
`capacity` slots filled first-fit-decreasing, with a block-diagonal boolean mask so a token only sees
tokens of its own source frame. Packed attention therefore equals running each frame alone on its
survivors. Empty slots attend only to themselves, so no softmax row is ever empty (no NaN).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from core.layers.windows import WindowGrid


@dataclass
class PackPlan:
    """Where each surviving token lives, flat and packed.

    Flat order is (frame, window, slot): the connector can regroup windows without a sort.
    """

    token_frame: torch.Tensor  # (T,) frame id in [0, B·F)
    token_window: torch.Tensor  # (T,) window id within the frame
    token_slot: torch.Tensor  # (T,) slot within the window
    token_patch: torch.Tensor  # (T,) patch id within the frame
    row: torch.Tensor  # (T,) packed row
    slot: torch.Tensor  # (T,) position within the row
    rows: int
    capacity: int
    attn_mask: torch.Tensor  # (rows, 1, capacity, capacity) bool

    @property
    def num_tokens(self) -> int:
        return self.token_frame.numel()

    def pack(self, flat: torch.Tensor) -> torch.Tensor:
        """(T, ...) → (rows, capacity, ...), zeros in empty slots."""
        out = flat.new_zeros((self.rows * self.capacity, *flat.shape[1:]))
        out[self.row * self.capacity + self.slot] = flat
        return out.unflatten(0, (self.rows, self.capacity))

    def unpack(self, packed: torch.Tensor) -> torch.Tensor:
        """(rows, capacity, ...) → (T, ...)."""
        return packed.flatten(0, 1)[self.row * self.capacity + self.slot]


def first_fit_decreasing(counts: list[int], capacity: int) -> tuple[list[int], list[int], int]:
    """Assign each item (frame) to a row: returns (row per item, offset per item, number of rows).

    Items of size 0 get row −1. Largest first, each into the first row with room.
    """
    order = sorted(range(len(counts)), key=lambda i: -counts[i])
    free: list[int] = []
    row_of = [-1] * len(counts)
    offset_of = [0] * len(counts)
    for i in order:
        c = counts[i]
        if c == 0:
            continue
        if c > capacity:
            raise ValueError(f"frame with {c} survivors exceeds row capacity {capacity}")
        for r, room in enumerate(free):
            if room >= c:
                row_of[i], offset_of[i] = r, capacity - room
                free[r] = room - c
                break
        else:
            row_of[i], offset_of[i] = len(free), 0
            free.append(capacity - c)
    return row_of, offset_of, len(free)


def build_pack_plan(keep_windows: torch.Tensor, windows: WindowGrid) -> PackPlan:
    """keep_windows: (frames, num_windows) bool → the plan for every surviving patch."""
    device = keep_windows.device
    valid = windows.patch_valid.to(device)
    token_mask = keep_windows[:, :, None] & valid[None]
    token_frame, token_window, token_slot = token_mask.nonzero(as_tuple=True)
    token_patch = windows.patch_index.to(device)[token_window, token_slot]
    counts = token_mask.flatten(1).sum(1)
    capacity = windows.num_patches
    row_of, offset_of, rows = first_fit_decreasing(counts.tolist(), capacity)
    row_of_t = torch.tensor(row_of, device=device, dtype=torch.long)
    offset_t = torch.tensor(offset_of, device=device, dtype=torch.long)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(token_frame.numel(), device=device) - starts[token_frame]
    row = row_of_t[token_frame]
    slot = offset_t[token_frame] + rank
    rows = max(rows, 1)
    segment = torch.full((rows * capacity,), -1, device=device, dtype=torch.long)
    segment[row * capacity + slot] = token_frame
    segment = segment.view(rows, capacity)
    same = (segment[:, :, None] == segment[:, None, :]) & (segment[:, :, None] >= 0)
    eye = torch.eye(capacity, dtype=torch.bool, device=device)
    attn_mask = (same | eye)[:, None]
    return PackPlan(
        token_frame, token_window, token_slot, token_patch, row, slot, rows, capacity, attn_mask
    )
