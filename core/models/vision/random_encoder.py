"""`random`: a weightless deterministic encoder for smoke runs (it has no blocks, so it hosts no
in-ViT reducer)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from core.config.vision import VisionConfig
from core.extensions import EncoderCost, Extension, TokenFlow
from core.models.vision.vit import patch_embed_flops
from core.registry import VISION_ENCODERS

if TYPE_CHECKING:
    from core.config.experiment import ExperimentConfig


@VISION_ENCODERS.register("random")
class RandomEncoder(Extension, nn.Module):
    """A fixed random projection of each patch plus fixed random positions."""

    hosts_reducers = False

    @staticmethod
    def num_blocks(cfg: VisionConfig) -> int:
        return 0

    @classmethod
    def flops(cls, cfg: ExperimentConfig, flow: TokenFlow) -> EncoderCost:
        """The fixed patch projection costs what a patch embedding does; no blocks."""
        return EncoderCost(patch_embed_flops(cfg, flow), [])

    def __init__(self, cfg: VisionConfig, image_size: int) -> None:
        super().__init__()
        self.patch_size = cfg.patch_size
        self.grid = image_size // cfg.patch_size
        self.dim = cfg.dim
        self.depth = 0
        self.mlp_dim = cfg.mlp_dim
        gen = torch.Generator().manual_seed(1234)
        fan_in = 3 * cfg.patch_size**2
        proj = torch.randn(fan_in, cfg.dim, generator=gen) / fan_in**0.5
        pos = torch.randn(self.grid * self.grid, cfg.dim, generator=gen) * 0.1
        self.register_buffer("proj", proj, persistent=False)
        self.register_buffer("pos", pos, persistent=False)

    def embed(self, pixels: torch.Tensor) -> torch.Tensor:
        p = self.patch_size
        patches = F.unfold(pixels, p, stride=p).transpose(1, 2)  # (frames, N, 3p²)
        return torch.tanh(patches @ self.proj.to(patches.dtype)) + self.pos.to(patches.dtype)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.embed(pixels)
