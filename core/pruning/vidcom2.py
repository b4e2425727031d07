"""VidCom2: per-frame budgets from frame uniqueness, then the most distinctive tokens of each frame
(Liu et al., EMNLP 2025).

Follows the official `vidcom2.py`: keep the half of the channels with the lowest variance over the
clip's tokens and L2-normalise every token on them; a token's similarity to a centre c is the
multi-scale Gaussian Σₐ exp(−‖x − c‖² / 2a), a = 2⁻³…2¹; the video centre is the mean of all tokens
and a frame centre the mean of its frame. A frame's uniqueness is minus its tokens' mean similarity
to the video centre; p = softmax(uniqueness / 0.01) over frames; frame t keeps the ratio
base·(1 + p_t − mean p), capped at 1; inside a frame it keeps the tokens with the lowest video- plus
frame-similarity. Attention-free, training-free.

Changes: the ratios become integer counts summing exactly to K (floors, then the largest remainders,
then any capped excess spread evenly over frames with room); padded frames are left out of the
statistics and the softmax and take budget only if the real frames cannot hold it; it acts on the
connector's output (the paper: the projector's output at the LLM input, the same point).
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
    apportion,
    keep_highest,
    selection,
    water_fill,
)
from core.registry import REDUCERS

if TYPE_CHECKING:
    from core.config.experiment import ExperimentConfig

BANDWIDTHS = tuple(2.0**k for k in range(-3, 2))


@dataclass
class VidCom2Config:
    """`pruning.vidcom2.*`."""

    temperature: float = 0.01  # of the softmax over frame uniqueness

    def check(self, path: str) -> None:
        if self.temperature <= 0:
            fail(f"{path}.temperature", self.temperature, "must be positive", "use 0.01")


def kept_channels(dim: int) -> int:
    """The lowest-variance half of the channels (at least one)."""
    return max(1, dim // 2)


def gaussian_similarity(x: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
    """x (..., n, D), centre (..., D) → (..., n): Σₐ exp(−‖x − c‖² / 2a), the cross term as one
    matrix product (2·n·D FLOPs)."""
    cross = (x @ centre[..., :, None])[..., 0]
    sq = (x * x).sum(-1) + (centre * centre).sum(-1)[..., None] - 2 * cross
    sq = sq.clamp_min(0)
    return sum(torch.exp(-sq / (2 * a)) for a in BANDWIDTHS)


@REDUCERS.register("vidcom2")
class VidCom2(PostViTReducer):
    """Frame budgets from uniqueness, then each frame's most distinctive tokens."""

    Config = VidCom2Config
    display = Display(label="VidCom2", short="vidcom2", order=68)

    @classmethod
    def flops(cls, cfg: ExperimentConfig, flow: TokenFlow) -> int:
        """Each token's cross term with the video centre and with its frame centre on the kept
        channels: 2 · 2·(F·P′)·d′, d′ = ⌊d/2⌋."""
        return 2 * 2 * flow.full_tokens * kept_channels(cfg.lm.dim)

    def reduce(self, inputs: PostViTInputs) -> Reduction:
        b, f, p, d = inputs.features.shape
        x = inputs.features.detach().float()  # scores only: the kept tokens carry the gradients
        real = inputs.frame_mask
        weight = real[:, :, None, None].to(x.dtype)  # (B, F, 1, 1)
        count = (weight.sum((1, 2)) * p).clamp_min(1.0)  # (B, 1)
        mean = (x * weight).sum((1, 2)) / count
        var = (((x - mean[:, None, None]) ** 2) * weight).sum((1, 2)) / count  # (B, D)
        channels = torch.argsort(var, dim=-1, stable=True)[:, : kept_channels(d)]
        x = x.gather(-1, channels[:, None, None, :].expand(-1, f, p, -1))
        x = F.normalize(x, dim=-1)
        video = (x * weight).sum((1, 2)) / count  # (B, d′)
        video_sim = gaussian_similarity(x.flatten(1, 2), video).view(b, f, p)
        frame_sim = gaussian_similarity(x, x.mean(2))  # (B, F, P′)
        uniqueness = -video_sim.mean(-1)  # (B, F)
        budgets = []
        for clip, flags in enumerate(real.tolist()):
            frames = [t for t in range(f) if flags[t]]
            budget = [0] * f
            if frames:
                u = uniqueness[clip, frames] / self.options.temperature
                prob = torch.softmax(u, 0)
                share = inputs.n_keep / len(frames) * (1 + prob - prob.mean())
                for t, k in zip(frames, apportion(share.tolist(), inputs.n_keep, p), strict=True):
                    budget[t] = k
            padded = [t for t in range(f) if t not in frames]
            for t, k in zip(
                padded, water_fill(inputs.n_keep - sum(budget), [p] * len(padded)), strict=True
            ):
                budget[t] = k
            budgets.append(budget)
        counts = torch.tensor(budgets, dtype=torch.long, device=x.device)
        score = -(video_sim + frame_sim)  # distinctive first
        keep = keep_highest(score, counts, self.tie_keys(inputs, f * p).view(b, f, p))
        return selection(inputs, keep.flatten(1), score)
