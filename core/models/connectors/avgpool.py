"""`avgpool`: the mean of the window's real patches, then a linear projection to the LLM width."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from core.config.connector import ConnectorConfig
from core.extensions import Extension, TokenFlow
from core.layers.pooling import masked_mean
from core.registry import CONNECTORS

if TYPE_CHECKING:
    from core.config.experiment import ExperimentConfig


@CONNECTORS.register("avgpool")
class AvgPoolConnector(Extension, nn.Module):
    def __init__(self, cfg: ConnectorConfig, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(in_dim, out_dim)

    @classmethod
    def flops(cls, cfg: ExperimentConfig, flow: TokenFlow) -> int:
        """The projection, per pooled window: 2Dd (the mean is not a matrix product)."""
        return flow.connector_tokens * 2 * cfg.vision.dim * cfg.lm.dim

    def forward(self, windows: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        return self.proj(masked_mean(windows, valid))
