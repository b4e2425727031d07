"""Vision encoders (registry VISION_ENCODERS), one module each: `vit`, `random`, `siglip2`."""

from __future__ import annotations

from torch import nn

from core.config.vision import VisionConfig
from core.models.vision import random_encoder, siglip2  # noqa: F401  (register the encoders)
from core.models.vision.random_encoder import RandomEncoder
from core.models.vision.vit import ViT
from core.registry import VISION_ENCODERS


def build_encoder(cfg: VisionConfig, image_size: int) -> nn.Module:
    """Build the configured encoder; frozen encoders get requires_grad=False and stay in eval mode."""
    encoder = VISION_ENCODERS.get(cfg.type)(cfg, image_size)
    if cfg.frozen:
        encoder.requires_grad_(False)
    return encoder


__all__ = ["RandomEncoder", "ViT", "build_encoder"]
