"""`attentional_pool`: multi-head attention with the window mean as the query and the window's
patches as keys/values, then a linear projection to the LLM width.

Settings: `connector.attentional_pool.heads` (must divide vision.dim).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from core.config._build import fail
from core.config.connector import ConnectorConfig
from core.extensions import Extension, TokenFlow
from core.layers.pooling import AttentionPool
from core.registry import CONNECTORS

if TYPE_CHECKING:
    from core.config.experiment import ExperimentConfig

PATH = "connector.attentional_pool"


@dataclass
class AttentionalPoolConfig:
    heads: int = 4

    def check(self, path: str) -> None:
        if self.heads < 1:
            fail(f"{path}.heads", self.heads, "must be ≥ 1", "use e.g. 4")


@CONNECTORS.register("attentional_pool")
class AttentionalPoolConnector(Extension, AttentionPool):
    Config = AttentionalPoolConfig

    def __init__(self, cfg: ConnectorConfig, in_dim: int, out_dim: int) -> None:
        heads = cfg.options.heads
        if in_dim % heads:
            raise ValueError(
                f"{PATH}.heads={heads} must divide the vision width {in_dim}. Fix: pick a divisor."
            )
        super().__init__(in_dim, heads)
        self.proj = nn.Linear(in_dim, out_dim)

    @classmethod
    def check_experiment(cls, cfg: ExperimentConfig) -> None:
        heads, dim = cfg.connector.options.heads, cfg.vision.dim
        if dim % heads:
            fail(f"{PATH}.heads", heads, f"must divide vision.dim={dim}", "pick a divisor")

    @classmethod
    def flops(cls, cfg: ExperimentConfig, flow: TokenFlow) -> int:
        """Per pooled window: the attention pool over w² slots (`AttentionPool.window_flops`: 2D² + 4w²D²
        + 4w²D + 2D²), then the projection 2Dd."""
        d = cfg.vision.dim
        pool = AttentionPool.window_flops(flow.connector_tokens, cfg.connector.window**2, d)
        return pool + flow.connector_tokens * 2 * d * cfg.lm.dim

    def forward(self, windows: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        return self.proj(super().forward(windows, valid))
