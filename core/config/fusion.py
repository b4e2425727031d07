"""Fusion section: how visual tokens enter the language model."""

from __future__ import annotations

from dataclasses import dataclass

from core.config._build import fail
from core.registry import FUSION_ARCHS

MOMA_EVAL_ROUTERS = ("aux", "token_choice")


@dataclass
class FusionConfig:
    arch: str = "joint_decoder"
    cross_attention_every: int = 1
    moma_image_experts: int = 4
    moma_text_experts: int = 4
    moma_capacity: float = 0.0  # 0 → 1/experts (paper default)
    moma_eval_router: str = "aux"

    def __post_init__(self) -> None:
        if self.arch not in FUSION_ARCHS:
            raise ValueError(FUSION_ARCHS.unknown_message(self.arch, "fusion.arch"))
        if self.cross_attention_every < 1:
            fail(
                "fusion.cross_attention_every",
                self.cross_attention_every,
                "must be ≥ 1",
                "use 1 for a cross-attention block after every layer",
            )
        for name in ("moma_image_experts", "moma_text_experts"):
            if getattr(self, name) < 1:
                fail(f"fusion.{name}", getattr(self, name), "must be ≥ 1", "use e.g. 4")
        if not 0.0 <= self.moma_capacity <= 1.0:
            fail(
                "fusion.moma_capacity",
                self.moma_capacity,
                "must lie in [0, 1]",
                "use 0 for the 1/experts default",
            )
        if self.moma_eval_router not in MOMA_EVAL_ROUTERS:
            fail(
                "fusion.moma_eval_router",
                self.moma_eval_router,
                "unknown eval router",
                f"use one of {MOMA_EVAL_ROUTERS}",
            )
