"""Connectors: pool each w×w window of patch features into one LLM-width token.

Both take windows already grouped as (M, w², D) with a slot-validity mask (ragged edge windows have
fewer real patches), so the dense path and the pruned path (only surviving windows) share one code
path and P′ = ceil(grid/w)² tokens per frame before pruning.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from core.config.connector import ConnectorConfig
from core.registry import CONNECTORS


def masked_mean(windows: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    w = valid.to(windows.dtype)[..., None]
    return (windows * w).sum(-2) / w.sum(-2).clamp_min(1.0)


@CONNECTORS.register("avgpool")
class AvgPoolConnector(nn.Module):
    """Mean of the window's real patches, then a linear projection."""

    def __init__(self, cfg: ConnectorConfig, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(in_dim, out_dim)

    def forward(self, windows: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        return self.proj(masked_mean(windows, valid))


@CONNECTORS.register("attentional_pool")
class AttentionalPoolConnector(nn.Module):
    """Multi-head attention with the window mean as the query and the window's patches as keys."""

    def __init__(self, cfg: ConnectorConfig, in_dim: int, out_dim: int) -> None:
        super().__init__()
        if in_dim % cfg.heads:
            raise ValueError(
                f"connector.heads={cfg.heads} must divide the vision width {in_dim}. "
                "Fix: pick a divisor."
            )
        self.heads = cfg.heads
        self.q = nn.Linear(in_dim, in_dim)
        self.k = nn.Linear(in_dim, in_dim)
        self.v = nn.Linear(in_dim, in_dim)
        self.o = nn.Linear(in_dim, in_dim)
        self.proj = nn.Linear(in_dim, out_dim)

    def forward(self, windows: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        return self.proj(attention_pool(self, windows, valid))


def attention_pool(mod: nn.Module, windows: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Shared by the connector and the STTS window pooler: (M, s, D) → (M, D)."""
    h = mod.heads
    query = mod.q(masked_mean(windows, valid))[:, None]  # (M, 1, D)
    q = query.unflatten(-1, (h, -1)).transpose(1, 2)
    k = mod.k(windows).unflatten(-1, (h, -1)).transpose(1, 2)
    v = mod.v(windows).unflatten(-1, (h, -1)).transpose(1, 2)
    mask = valid[:, None, None, :]
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return mod.o(out.transpose(1, 2).flatten(-2)[:, 0])


def build_connector(cfg: ConnectorConfig, in_dim: int, out_dim: int) -> nn.Module:
    return CONNECTORS.get(cfg.type)(cfg, in_dim, out_dim)
