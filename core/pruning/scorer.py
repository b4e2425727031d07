"""STTS: a learned spatio-temporal window scorer inside the ViT (arXiv 2603.18004).

After block `prune_at`: attention-pool each window (query = window mean, own weights), concatenate
with the same window of the previous frame (zeros for frame 0), MLP → sigmoid score. The log of the
per-frame min-max-rescaled score is an additive key bias in block prune_at+1 (the path by which the
task loss trains the scorer); an auxiliary MSE ties the score to 1 − cos(previous, current) window
features (temporal redundancy). After block prune_at+1 one global top-k per clip over all its windows
removes the lowest-scored windows; the first frame is always kept whole.

Choices (documented deviations from the reference code): the rescale is per frame over its real
windows (the reference rescales per patch row); the previous frame of a clip's first frame is zeros
(never a neighbouring clip); `aux_stop_gradient` optionally detaches the similarity target.

Settings: `pruning.scorer.{aux_coef, aux_stop_gradient, rescale_bias_min, scorer_hidden}`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from core.config._build import fail
from core.config.pruning import PruningConfig
from core.extensions import Display, TokenFlow
from core.layers.pooling import AttentionPool
from core.pruning.base import (
    PROTECT,
    ReductionInputs,
    Selection,
    TokenReducer,
    neighbour_cosine,
    padding_priority,
    prune_lowest,
    window_vectors,
)
from core.registry import REDUCERS

if TYPE_CHECKING:
    from core.config.experiment import ExperimentConfig

POOLER_INIT_STD = 0.02


@dataclass
class STTSConfig:
    """`pruning.scorer.*`."""

    aux_coef: float = 0.5
    aux_stop_gradient: bool = False
    rescale_bias_min: float = math.exp(-2.0)
    scorer_hidden: int = 0  # 0 → the ViT's MLP width

    def check(self, path: str) -> None:
        if self.aux_coef < 0:
            fail(f"{path}.aux_coef", self.aux_coef, "must be ≥ 0", "use 0.5 (reference) or 0")
        if not 0.0 < self.rescale_bias_min <= 1.0:
            fail(
                f"{path}.rescale_bias_min",
                self.rescale_bias_min,
                "must lie in (0, 1]",
                "use exp(-2) ≈ 0.1353",
            )


def _trunc_normal_init(lin: nn.Linear) -> None:
    nn.init.trunc_normal_(lin.weight, std=math.sqrt(1.0 / lin.in_features))
    nn.init.zeros_(lin.bias)


def _pooler_heads(dim: int) -> int:
    return next(h for h in (16, 12, 8, 6, 4, 3, 2, 1) if dim % h == 0)


@REDUCERS.register("scorer")
class STTSScorer(TokenReducer):
    Config = STTSConfig
    display = Display(label="STTS", short="stts", order=40)
    trained = True
    needs_divisible_grid = True
    protects_first_frame = True
    hard_prune_delay = 1

    def __init__(self, cfg: PruningConfig, vit_dim: int = 0, vit_mlp_dim: int = 0) -> None:
        super().__init__(cfg, vit_dim, vit_mlp_dim)
        if vit_dim <= 0:
            raise ValueError("the STTS scorer needs the ViT width (vit_dim > 0)")
        hidden = self.options.scorer_hidden or vit_mlp_dim or 4 * vit_dim
        # one attention layer per window, query = window mean (separate weights from the connector)
        self.pooler = AttentionPool(vit_dim, _pooler_heads(vit_dim), init_std=POOLER_INIT_STD)
        self.mlp = nn.Sequential(
            nn.Linear(2 * vit_dim, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, 1),
        )
        for layer in self.mlp:
            if isinstance(layer, nn.Linear):
                _trunc_normal_init(layer)

    @classmethod
    def flops(cls, cfg: ExperimentConfig, flow: TokenFlow) -> int:
        """Per frame, on all P′ windows: the pooler (`AttentionPool.window_flops`, w² slots per window:
        q 2P′D², k and v 4ND², attention 4P′w²D, o 2P′D²) and the MLP 2D→H→H→1:
        2P′(2D·H + H·H + H), H = scorer_hidden or the ViT MLP width."""
        d, h = cfg.vision.dim, cfg.pruning.options.scorer_hidden or cfg.vision.mlp_dim
        pooler = AttentionPool.window_flops(flow.windows, cfg.connector.window**2, d)
        mlp = 2 * flow.windows * (2 * d * h + h * h + h)
        return flow.frames * (pooler + mlp)

    def score(self, hidden: torch.Tensor, inputs: ReductionInputs) -> torch.Tensor:
        """(B, F, N, D) → sigmoid scores (B, F, W); low = redundant / unimportant."""
        win = inputs.windows
        b, f = hidden.shape[:2]
        grouped = win.gather(hidden)  # (B, F, W, w², D)
        valid = win.patch_valid.to(hidden.device).expand(b * f, -1, -1).reshape(-1, win.slots)
        pooled = self.pooler(grouped.flatten(0, 2), valid).view(b, f, win.num_windows, -1)
        prev = torch.cat([torch.zeros_like(pooled[:, :1]), pooled[:, :-1]], dim=1)
        return torch.sigmoid(self.mlp(torch.cat([prev, pooled], dim=-1))).squeeze(-1)

    def aux_loss(self, scores: torch.Tensor, inputs: ReductionInputs) -> torch.Tensor:
        """MSE(score, 1 − cos(prev, cur)) over frames t ≥ 1 whose both frames are real."""
        vec = window_vectors(inputs.hidden, inputs.windows)
        target = 1.0 - neighbour_cosine(vec)
        if self.options.aux_stop_gradient:
            target = target.detach()
        fm = inputs.frame_mask
        pair = torch.zeros_like(fm)
        pair[:, 1:] = fm[:, 1:] & fm[:, :-1]
        weight = pair[:, :, None].expand_as(scores).to(scores.dtype)
        err = (scores - target.to(scores.dtype)) ** 2
        return self.options.aux_coef * (err * weight).sum() / weight.sum().clamp_min(1.0)

    def key_bias(self, scores: torch.Tensor, inputs: ReductionInputs) -> torch.Tensor:
        """log of per-frame min-max rescaled scores in [rescale_bias_min, 1], at patch resolution;
        0 on the first frame and on padded frames."""
        lo = scores.amin(-1, keepdim=True)
        hi = scores.amax(-1, keepdim=True)
        unit = (scores - lo) / (hi - lo).clamp_min(1e-6)
        rmin = self.options.rescale_bias_min
        bias = torch.log(rmin + (1.0 - rmin) * unit)
        exempt = ~inputs.frame_mask
        exempt[:, 0] = True
        bias = bias.masked_fill(exempt[:, :, None], 0.0)
        return bias[..., inputs.windows.window_of_patch.to(bias.device)]

    def select(self, inputs: ReductionInputs) -> Selection:
        scores = self.score(inputs.hidden, inputs)
        w = inputs.windows.num_windows
        priority = scores.detach().float() + padding_priority(inputs.frame_mask, w)
        priority[:, 0] += PROTECT
        aux = (
            self.aux_loss(scores, inputs) if inputs.training and self.options.aux_coef > 0 else None
        )
        return Selection(
            keep=prune_lowest(priority, inputs.n_prune),
            key_bias=self.key_bias(scores, inputs),
            aux_loss=aux,
            scores=scores.detach(),
        )
