"""The value object that carries visual tokens from the vision side into a fusion arch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class VisualTokens:
    """A batch of visual tokens after encoder → reducer (at its stage) → connector.

    Every clip in a batch carries the same number K of token slots (static shapes per (ratio,
    frames)): K = budget.kept_tokens(F, P′, ratio), F the batch's padded frame count. A clip with
    r real frames fills kept_tokens(r) of them with its tokens, in frame order and windows in
    raster order within a frame; the remaining slots are filler at the end (`core.models.
    clip_slots`). `valid` is False for filler and for tokens of padded frames (short or
    undecodable clips): fusion archs must mask them from attention, cross-attention K/V and MoMa
    routing. A merged token stands at its representative's (frame, window) and `sizes` counts the
    connector windows it represents (None: every token is one window).
    """

    features: torch.Tensor  # (B, K, D_lm)
    valid: torch.Tensor  # (B, K) bool
    frame_index: torch.Tensor  # (B, K) long: source frame of each token
    window_index: torch.Tensor  # (B, K) long: window position within its frame
    num_frames: int
    tokens_per_frame: int
    sizes: torch.Tensor | None = None  # (B, K) float: windows each token represents
    aux_loss: torch.Tensor | None = None
    diagnostics: dict[str, Any] = field(default_factory=dict)
    real_frames: torch.Tensor | None = None  # (B,) long: each clip's real frames (None: all F)

    def __post_init__(self) -> None:
        b, k = self.features.shape[:2]
        for name in ("valid", "frame_index", "window_index", "sizes"):
            t = getattr(self, name)
            if t is not None and tuple(t.shape) != (b, k):
                raise ValueError(
                    f"VisualTokens.{name} has shape {tuple(t.shape)}, expected {(b, k)}"
                )
        if self.real_frames is not None and tuple(self.real_frames.shape) != (b,):
            raise ValueError(
                f"VisualTokens.real_frames has shape {tuple(self.real_frames.shape)}, expected {(b,)}"
            )
        if self.valid.dtype != torch.bool:
            raise ValueError("VisualTokens.valid must be a bool tensor")

    @property
    def num_tokens(self) -> int:
        return self.features.shape[1]
