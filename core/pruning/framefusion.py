"""FrameFusion: merge tokens similar to the same position in the previous frame, then prune the
unimportant ones (Fu et al., ICCV 2025).

Follows the paper's two phases: a token whose cosine to the same patch position in the previous
frame is at least `threshold` (S_th) merges into the earlier unmerged token that starts its chain
(a plain mean over the chain); if more tokens are mergeable than the budget needs removed, only the
most similar ones merge and nothing is pruned; otherwise every mergeable token merges and the
remaining tokens are pruned by importance to meet the budget exactly. Training-free.

Changes: the paper runs in the LLM's first layers (merging repeatedly, pruning by the LLM's
cumulative attention); here it runs once on the connector's output, so the LLM sees K tokens from
its first layer: the merge is one pass, and importance is the ViT's last-block attention received
(averaged over heads and queries, summed over each window and over a chain's members), computed
beside SDPA (`received_attention`), as the LLM attention it stands for is not yet available. The
`ratio_lower_bound` stop of the iterative merge has no meaning for one pass and is left out. Padded
frames never merge and are pruned first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from core.config._build import fail
from core.extensions import Display, TokenFlow
from core.pruning.post_vit import (
    LOW,
    PostViTInputs,
    PostViTReducer,
    Reduction,
    finish,
    group_mean,
    keep_highest,
    pair_cosine,
    pair_cosine_flops,
    received_attention,
    received_attention_flops,
    window_sum,
)
from core.registry import REDUCERS

if TYPE_CHECKING:
    from core.config.experiment import ExperimentConfig


@dataclass
class FrameFusionConfig:
    """`pruning.framefusion.*`."""

    threshold: float = 0.6  # S_th: cosine at or above which a token merges into its chain

    def check(self, path: str) -> None:
        if not -1.0 <= self.threshold <= 1.0:
            fail(f"{path}.threshold", self.threshold, "must lie in [-1, 1]", "use 0.6")


def chain_roots(merged: torch.Tensor) -> torch.Tensor:
    """merged (B, F, P′) bool: token (t, p) folds into (t−1, p) → (B, F, P′) the frame of the
    earliest unmerged token of each chain (frame 0 never merges)."""
    f = merged.shape[1]
    t = torch.arange(f, device=merged.device)[None, :, None].expand_as(merged)
    return torch.where(merged, torch.zeros_like(t), t).cummax(1).values


@REDUCERS.register("framefusion")
class FrameFusion(PostViTReducer):
    """Merge temporal repeats into their chain's first token, then keep the most attended."""

    Config = FrameFusionConfig
    display = Display(label="FrameFusion", short="ffusion", order=70)
    needs_vit_attention = True

    @classmethod
    def flops(cls, cfg: ExperimentConfig, flow: TokenFlow) -> int:
        """The same-position cosines of frames 1..F−1 (2·d each) and `received_attention`."""
        pairs = (flow.frames - 1) * flow.windows
        return pair_cosine_flops(pairs, cfg.lm.dim) + received_attention_flops(cfg, flow.frames)

    def reduce(self, inputs: PostViTInputs) -> Reduction:
        b, f, p, _ = inputs.features.shape
        real = inputs.frame_mask
        sim = torch.full((b, f, p), -2.0, device=inputs.features.device)
        sim[:, 1:] = pair_cosine(inputs.features[:, 1:], inputs.features[:, :-1])
        pair = torch.zeros_like(real)
        pair[:, 1:] = real[:, 1:] & real[:, :-1]
        mergeable = (sim >= self.options.threshold) & pair[:, :, None]
        tie = self.tie_keys(inputs, f * p)
        need = torch.full((b,), f * p - inputs.n_keep, device=tie.device)
        merged = keep_highest(sim.masked_fill(~mergeable, LOW).flatten(1), need, tie)
        merged = merged.view(b, f, p) & mergeable
        roots = chain_roots(merged)
        windows = torch.arange(p, device=roots.device).expand_as(roots)
        target = (roots * p + windows).flatten(1)
        means, sizes = group_mean(inputs.flat, target)
        attention = window_sum(received_attention(inputs.vit_q, inputs.vit_k), inputs.windows)
        importance = torch.zeros_like(sizes).scatter_add(1, target, attention.flatten(1))
        is_root = ~merged.flatten(1)
        priority = importance + LOW * (~real).repeat_interleave(p, 1) + 2 * LOW * ~is_root
        keep = keep_highest(priority, torch.full((b,), inputs.n_keep, device=tie.device), tie)
        diagnostics = {"merged_fraction": float(merged.float().mean())}
        return finish(inputs, means, keep, sizes, attention, diagnostics)
