"""Pooling a window of patch features into one vector: masked mean and attention pooling.

Windows arrive grouped as (M, s, D) with a slot-validity mask (ragged edge windows have fewer real
patches). `AttentionPool` is one multi-head attention layer whose query is the window's mean; the
attentional-pool connector and STTS's window pooler are both this module (with their own weights).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def masked_mean(windows: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(M, s, D), (M, s) bool → (M, D): mean over the real slots."""
    w = valid.to(windows.dtype)[..., None]
    return (windows * w).sum(-2) / w.sum(-2).clamp_min(1.0)


class AttentionPool(nn.Module):
    """(M, s, D) → (M, D): query = q(window mean), keys/values = k/v(patches), then o.

    `init_std=None` keeps PyTorch's default Linear init; a float draws weights from N(0, std²) and
    zeroes the biases.
    """

    def __init__(self, dim: int, heads: int, init_std: float | None = None) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention-pool heads={heads} must divide the width {dim}")
        self.heads = heads
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        if init_std is not None:
            for lin in (self.q, self.k, self.v, self.o):
                nn.init.normal_(lin.weight, std=init_std)
                nn.init.zeros_(lin.bias)

    @staticmethod
    def window_flops(windows: int, slots: int, dim: int) -> int:
        """Per window: q on the mean 2D², k and v on every slot 4sD², attention of one query over s
        keys 4sD, o 2D² (padded slots of ragged windows are computed too, so s = w²). A one-slot
        window attends to its only key with weight 1: just v and o, 4D²."""
        if slots == 1:
            return windows * 4 * dim * dim
        return windows * (4 * dim * dim + 4 * slots * dim * dim + 4 * slots * dim)

    def forward(self, windows: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        if windows.shape[1] == 1:  # softmax over one key is 1: the query cannot matter
            return self.o(self.v(windows[:, 0]))
        return self.attend(windows, valid)

    def attend(self, windows: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """The full attention pool (what `forward` computes for windows of more than one slot)."""
        h = self.heads
        query = self.q(masked_mean(windows, valid))[:, None]  # (M, 1, D)
        q = query.unflatten(-1, (h, -1)).transpose(1, 2)
        k = self.k(windows).unflatten(-1, (h, -1)).transpose(1, 2)
        v = self.v(windows).unflatten(-1, (h, -1)).transpose(1, 2)
        mask = valid[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.o(out.transpose(1, 2).flatten(-2)[:, 0])
