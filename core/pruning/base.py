"""One interface for every token reducer.

A reducer acts at a `stage` (in-ViT now; post-ViT and in-LLM methods implement the same `select`
contract on their own features later). Its budget is always expressed as visual tokens removed before
the LLM input (`core.budget.pruned_tokens`), so methods are compared at equal LLM-token counts.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from core.config.pruning import PruningConfig
from core.models.windows import WindowGrid

PROTECT = 1e4  # priority offset: protected windows are pruned only after every unprotected one
PADDING = -1e9  # padded frames' windows are pruned first (they never reach the LLM as real tokens)


class Stage(enum.StrEnum):
    IN_VIT = "in_vit"
    POST_VIT = "post_vit"
    IN_LLM = "in_llm"


@dataclass
class ReductionInputs:
    """What an in-ViT reducer may look at, all per clip: (B, F, ...)."""

    hidden: torch.Tensor  # (B, F, N, D) after block prune_at
    embeddings: torch.Tensor  # (B, F, N, D) ViT input embeddings (patch + position)
    frame_mask: torch.Tensor  # (B, F) bool
    windows: WindowGrid
    n_prune: int  # windows to remove per clip
    training: bool
    step: int = 0
    sample_keys: torch.Tensor | None = None  # (B,) int64 stable per clip
    object_mask: torch.Tensor | None = None  # (B, F, S, S) bool (synthetic ground truth)


@dataclass
class Selection:
    keep: torch.Tensor  # (B, F, W) bool, exactly F·W − n_prune True per clip
    key_bias: torch.Tensor | None = None  # (B, F, N) additive key bias for the delayed blocks
    aux_loss: torch.Tensor | None = None
    scores: torch.Tensor | None = None  # (B, F, W) method scores (diagnostics)
    diagnostics: dict[str, Any] = field(default_factory=dict)


class TokenReducer(nn.Module):
    """Base class. Subclasses set the class attributes and implement `select`."""

    stage: Stage = Stage.IN_VIT
    needs_divisible_grid: bool = False
    protects_first_frame: bool = False
    needs_ground_truth: bool = False
    hard_prune_delay: int = 0  # blocks between scoring (after prune_at) and hard removal

    def __init__(self, cfg: PruningConfig, vit_dim: int = 0, vit_mlp_dim: int = 0) -> None:
        super().__init__()
        self.cfg = cfg

    def select(self, inputs: ReductionInputs) -> Selection:
        """Decide which windows survive; subclasses override."""
        raise TypeError(f"{type(self).__name__} does not define select()")


def prune_lowest(priority: torch.Tensor, n_prune: int) -> torch.Tensor:
    """priority (B, F, W) → keep mask pruning the n_prune lowest per clip (stable, deterministic)."""
    b, f, w = priority.shape
    flat = priority.reshape(b, f * w)
    order = torch.argsort(flat, dim=1, stable=True)
    keep = torch.ones_like(flat, dtype=torch.bool)
    keep.scatter_(1, order[:, :n_prune], False)
    return keep.view(b, f, w)


def padding_priority(frame_mask: torch.Tensor, num_windows: int) -> torch.Tensor:
    """(B, F, W): PADDING on padded frames, 0 elsewhere."""
    pad = (~frame_mask).to(torch.float32)[:, :, None].expand(-1, -1, num_windows)
    return pad * PADDING


def window_vectors(x: torch.Tensor, windows: WindowGrid) -> torch.Tensor:
    """(B, F, N, D) → (B, F, W, w²·D): each window's patches concatenated (zeros in ragged slots)."""
    return windows.gather(x).flatten(-2)


def neighbour_cosine(vec: torch.Tensor) -> torch.Tensor:
    """cos(window t, same window t−1) for t ≥ 1; frame 0 gets 0. vec: (B, F, W, E)."""
    v = torch.nn.functional.normalize(vec.float(), dim=-1)
    sim = (v[:, 1:] * v[:, :-1]).sum(-1)
    return torch.cat([torch.zeros_like(sim[:, :1]), sim], dim=1)
