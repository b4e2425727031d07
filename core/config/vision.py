"""Vision encoder section."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.config._build import extension_options, fail, resolve_options
from core.registry import VISION_ENCODERS


@dataclass
class VisionConfig:
    """`vit` is our trainable ViT (host of in-ViT reducers); `random` is weightless; `siglip2` loads
    a local Hugging Face checkpoint into the same ViT module (optional `hf` extra)."""

    type: str = "vit"
    patch_size: int = 16
    dim: int = 64
    depth: int = 6  # the tiny preset: STTS at prune_at 0 leaves 4 blocks after its removal
    heads: int = 4
    mlp_ratio: float = 4.0
    frozen: bool = False
    checkpoint: str = ""
    options: Any = extension_options(VISION_ENCODERS, "type")  # written as vision.<type>.*

    def __post_init__(self) -> None:
        if self.type not in VISION_ENCODERS:
            raise ValueError(VISION_ENCODERS.unknown_message(self.type, "vision.type"))
        if self.patch_size < 1:
            fail("vision.patch_size", self.patch_size, "must be ≥ 1", "use e.g. 8")
        if self.depth < 1:
            fail("vision.depth", self.depth, "must be ≥ 1", "use e.g. 4")
        if self.heads < 1 or self.dim % self.heads:
            fail("vision.heads", self.heads, f"must divide vision.dim={self.dim}", "pick a divisor")
        if self.mlp_ratio <= 0:
            fail("vision.mlp_ratio", self.mlp_ratio, "must be positive", "use e.g. 4.0")
        resolve_options(self, "vision")

    @property
    def mlp_dim(self) -> int:
        return int(round(self.dim * self.mlp_ratio))
