"""The pre-ViT stage: reducers that decide before the encoder which frames (and windows) it sees.

The encoder runs only on the frames a plan names, so the ViT's cost falls with the budget too; the
connector pools only the windows the plan keeps (K per clip, `core.budget.kept_tokens`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch

from core.extensions import TokenFlow
from core.layers.windows import WindowGrid
from core.pruning.base import Stage, TokenReducer, clip_flow
from core.registry import VISION_ENCODERS

if TYPE_CHECKING:
    from core.config.experiment import ExperimentConfig


@dataclass
class PreViTInputs:
    frame_mask: torch.Tensor  # (B, F) bool
    windows: WindowGrid
    n_keep: int  # K tokens per clip at the LLM input
    training: bool
    step: int = 0
    sample_keys: torch.Tensor | None = None


@dataclass
class FramePlan:
    """What the encoder and the connector see of each clip."""

    frames: torch.Tensor  # (B, m) long: source frames to encode, ascending
    keep: torch.Tensor  # (B, m, P′) bool: their windows that reach the LLM, K per clip


class PreViTReducer(TokenReducer):
    """Base class of the pre-ViT reducers: implement `plan`."""

    stage: ClassVar[Stage] = Stage.PRE_VIT
    kept_per_frame_refusal = "drops whole frames before the ViT"

    def plan(self, inputs: PreViTInputs) -> FramePlan:
        """Frames to encode and windows to keep; subclasses override."""
        raise TypeError(f"{type(self).__name__} does not define plan()")

    @staticmethod
    def encoded_frames(kept: int, per_frame: int) -> int:
        """Frames the encoder runs on for K kept tokens: ⌈K / P′⌉."""
        return math.ceil(kept / per_frame)

    @classmethod
    def stage_flow(cls, cfg: ExperimentConfig, frames: int, text_len: int, vocab: int) -> TokenFlow:
        """The patch embedding and every block on all N patches of the ⌈K/P′⌉ encoded frames, the
        connector on the K kept windows, every LLM layer on K tokens."""
        depth = VISION_ENCODERS.get(cfg.vision.type).num_blocks(cfg.vision)
        kept = cfg.kept_tokens(frames)
        encoded = cls.encoded_frames(kept, cfg.tokens_per_frame)
        blocks = [[cfg.grid**2] * encoded for _ in range(depth)]
        return clip_flow(cfg, frames, text_len, vocab, blocks, kept)
