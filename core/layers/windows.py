"""Geometry of w×w windows over a square patch grid (ragged edge windows allowed).

A window is the unit shared by the connector (one LLM token per window) and the in-ViT reducers (one
score per window), so one pruned window removes exactly one LLM token.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from core import budget


@dataclass(frozen=True)
class WindowGrid:
    grid: int  # patches per side
    window: int  # w

    @property
    def per_side(self) -> int:
        return budget.windows_per_side(self.grid, self.window)

    @property
    def num_windows(self) -> int:
        return budget.tokens_per_frame(self.grid, self.window)

    @property
    def num_patches(self) -> int:
        return self.grid**2

    @property
    def slots(self) -> int:
        return self.window**2

    @property
    def divisible(self) -> bool:
        return self.grid % self.window == 0

    @functools.cached_property
    def patch_index(self) -> torch.Tensor:
        """(num_windows, w²) patch ids in raster order; padded slots of ragged windows hold 0."""
        return _layout(self.grid, self.window)[0]

    @functools.cached_property
    def patch_valid(self) -> torch.Tensor:
        """(num_windows, w²) bool: slot holds a real patch (False only in ragged edge windows)."""
        return _layout(self.grid, self.window)[1]

    @functools.cached_property
    def window_of_patch(self) -> torch.Tensor:
        """(num_patches,) window id of each patch."""
        rows = torch.arange(self.grid).div(self.window, rounding_mode="floor")
        return (rows[:, None] * self.per_side + rows[None, :]).reshape(-1)

    @functools.cached_property
    def window_sizes(self) -> torch.Tensor:
        return self.patch_valid.sum(-1)

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        """(..., N, D) per-frame patches → (..., num_windows, w², D); padded slots are zero."""
        idx = self.patch_index.to(x.device)
        out = x[..., idx.reshape(-1), :].unflatten(-2, idx.shape)
        return out * self.patch_valid.to(x.device)[..., None].to(x.dtype)


@functools.lru_cache(maxsize=32)
def _layout(grid: int, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    side = budget.windows_per_side(grid, window)
    wy, wx, sy, sx = torch.meshgrid(
        torch.arange(side),
        torch.arange(side),
        torch.arange(window),
        torch.arange(window),
        indexing="ij",
    )
    row, col = wy * window + sy, wx * window + sx
    valid = (row < grid) & (col < grid)
    index = torch.where(valid, row * grid + col, torch.zeros_like(row))
    return index.reshape(side * side, window * window), valid.reshape(side * side, window * window)
