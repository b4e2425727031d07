"""Vision encoders (registry VISION_ENCODERS): `vit`, `random`, `siglip2`."""

from __future__ import annotations

from torch import nn

from core.config.vision import VisionConfig
from core.models.vision.siglip2 import build_siglip2
from core.models.vision.vit import RandomEncoder, ViT
from core.registry import VISION_ENCODERS

VISION_ENCODERS.register("vit")(ViT)
VISION_ENCODERS.register("random")(RandomEncoder)
VISION_ENCODERS.register("siglip2")(build_siglip2)


def build_encoder(cfg: VisionConfig, image_size: int) -> nn.Module:
    """Build the configured encoder; frozen encoders get requires_grad=False and stay in eval mode."""
    encoder = VISION_ENCODERS.get(cfg.type)(cfg, image_size)
    if cfg.frozen:
        encoder.requires_grad_(False)
    return encoder


__all__ = ["RandomEncoder", "ViT", "build_encoder"]
