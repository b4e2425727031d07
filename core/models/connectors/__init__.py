"""Connectors (registry CONNECTORS), one module each: pool each w×w window of patch features into
one LLM-width token.

Every connector takes windows already grouped as (M, w², D) with a slot-validity mask (ragged edge
windows have fewer real patches), so the dense path and the pruned path (only surviving windows)
share one code path and P′ = ceil(grid/w)² tokens per frame before pruning.
"""

from __future__ import annotations

from torch import nn

from core.config.connector import ConnectorConfig
from core.models.connectors import attentional_pool, avgpool  # noqa: F401  (register)
from core.registry import CONNECTORS


def build_connector(cfg: ConnectorConfig, in_dim: int, out_dim: int) -> nn.Module:
    return CONNECTORS.get(cfg.type)(cfg, in_dim, out_dim)


__all__ = ["build_connector"]
