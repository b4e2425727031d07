"""VisionZip: dominant tokens by attention received, contextual merging of the rest (Yang et al.,
CVPR 2025).

Follows the paper's code, frame by frame: the dominant tokens are the ones the ViT attends to most;
of the rest, `contextual` targets are taken uniformly spaced in index order, every other leftover
token joins its most similar target by the dot product of L2-normalised head-averaged keys, and
each contextual token is the target plus the mean of the tokens that joined it (target + mean, as
the code does, not a joint mean). Training-free.

Changes: our ViT (like SigLIP, Molmo2's encoder) has no CLS token, so "attention received" is the
standard SigLIP port's (HoliTom's): the last block's attention averaged over heads and all queries,
computed beside SDPA in query chunks (`received_attention`, 2·N²·D extra FLOPs per frame, counted),
never an eager attention path; it is summed over each connector window and the keys are averaged
over it, so the unit is the connector token. It acts on the connector's output (the paper: the ViT
output before the projector). The clip's budget is spread evenly over its real frames; a frame's
share k splits into round(k · contextual_fraction) contextual and the rest dominant tokens
(`contextual_fraction` = 10/64, the paper's 54 + 10 split).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from core.config._build import fail
from core.extensions import Display, TokenFlow
from core.pruning.post_vit import (
    PostViTInputs,
    PostViTReducer,
    Reduction,
    finish,
    frame_budgets,
    head_mean_keys,
    keep_highest,
    received_attention,
    received_attention_flops,
    window_sum,
)
from core.registry import REDUCERS

if TYPE_CHECKING:
    from core.config.experiment import ExperimentConfig


@dataclass
class VisionZipConfig:
    """`pruning.visionzip.*`."""

    contextual_fraction: float = 10 / 64  # share of a frame's tokens that are contextual merges

    def check(self, path: str) -> None:
        if not 0.0 <= self.contextual_fraction < 1.0:
            fail(
                f"{path}.contextual_fraction",
                self.contextual_fraction,
                "must lie in [0, 1)",
                "use 0.15625 (the paper's 10 of 64)",
            )


@REDUCERS.register("visionzip")
class VisionZip(PostViTReducer):
    """Per frame: the most-attended windows, plus contextual merges of the rest."""

    Config = VisionZipConfig
    display = Display(label="VisionZip", short="vzip", order=60)
    needs_vit_attention = True

    @classmethod
    def flops(cls, cfg: ExperimentConfig, flow: TokenFlow) -> int:
        """`received_attention` on every frame, and the P′×P′ key-similarity matrix per frame
        (2·P′²·d_h; only the targets' columns are read)."""
        dh = cfg.vision.dim // cfg.vision.heads
        return received_attention_flops(cfg, flow.frames) + flow.frames * 2 * flow.windows**2 * dh

    def reduce(self, inputs: PostViTInputs) -> Reduction:
        b, f, p, d = inputs.features.shape
        attention = window_sum(received_attention(inputs.vit_q, inputs.vit_k), inputs.windows)
        budget = frame_budgets(inputs.frame_mask, inputs.n_keep, p)  # (B, F)
        contextual = (budget.float() * self.options.contextual_fraction).round().long()
        contextual = torch.where(budget >= p, 0, contextual)
        tie = self.tie_keys(inputs, f * p).view(b, f, p)
        dominant = keep_highest(attention, budget - contextual, tie)  # (B, F, P′)
        # targets: every step-th leftover window in index order, step = ⌊leftover / contextual⌋
        leftover = p - (budget - contextual)
        step = (leftover // contextual.clamp_min(1)).clamp_min(1)
        order = torch.cumsum((~dominant).long(), -1) - 1  # rank among the leftover windows
        target = (
            ~dominant
            & (order % step[..., None] == 0)
            & (order // step[..., None] < contextual[..., None])
        )
        keys = F.normalize(head_mean_keys(inputs), dim=-1)
        sim = keys @ keys.transpose(-1, -2)  # (B, F, P′, P′)
        sim = sim.masked_fill(~target[..., None, :], float("-inf"))
        joins = sim.argmax(-1)  # (B, F, P′): most similar target of each window
        member = ~dominant & ~target & contextual[..., None].gt(0)
        gathered = torch.zeros_like(inputs.features).scatter_add(
            2, joins[..., None].expand(-1, -1, -1, d), inputs.features * member[..., None]
        )
        count = torch.zeros_like(attention).scatter_add(2, joins, member.to(attention.dtype))
        mean = (gathered / count.clamp_min(1.0)[..., None]).to(inputs.features.dtype)
        tokens = torch.where(target[..., None], inputs.features + mean, inputs.features)
        is_rep = dominant | target
        sizes = torch.where(target, 1.0 + count, 1.0)
        return finish(inputs, tokens.flatten(1, 2), is_rep.flatten(1), sizes.flatten(1), attention)
