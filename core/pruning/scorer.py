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
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from core.config.pruning import PruningConfig
from core.models.connectors import attention_pool
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


class WindowPooler(nn.Module):
    """One attention layer per window, query = window mean (separate weights from the connector)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        for lin in (self.q, self.k, self.v, self.o):
            nn.init.normal_(lin.weight, std=0.02)
            nn.init.zeros_(lin.bias)

    def forward(self, windows: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        return attention_pool(self, windows, valid)


def _trunc_normal_init(lin: nn.Linear) -> None:
    nn.init.trunc_normal_(lin.weight, std=math.sqrt(1.0 / lin.in_features))
    nn.init.zeros_(lin.bias)


@REDUCERS.register("scorer")
class STTSScorer(TokenReducer):
    needs_divisible_grid = True
    protects_first_frame = True
    hard_prune_delay = 1

    def __init__(self, cfg: PruningConfig, vit_dim: int = 0, vit_mlp_dim: int = 0) -> None:
        super().__init__(cfg, vit_dim, vit_mlp_dim)
        if vit_dim <= 0:
            raise ValueError("the STTS scorer needs the ViT width (vit_dim > 0)")
        heads = next(h for h in (16, 12, 8, 6, 4, 3, 2, 1) if vit_dim % h == 0)
        hidden = cfg.scorer_hidden or vit_mlp_dim or 4 * vit_dim
        self.pooler = WindowPooler(vit_dim, heads)
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
        if self.cfg.aux_stop_gradient:
            target = target.detach()
        fm = inputs.frame_mask
        pair = torch.zeros_like(fm)
        pair[:, 1:] = fm[:, 1:] & fm[:, :-1]
        weight = pair[:, :, None].expand_as(scores).to(scores.dtype)
        err = (scores - target.to(scores.dtype)) ** 2
        return self.cfg.aux_coef * (err * weight).sum() / weight.sum().clamp_min(1.0)

    def key_bias(self, scores: torch.Tensor, inputs: ReductionInputs) -> torch.Tensor:
        """log of per-frame min-max rescaled scores in [rescale_bias_min, 1], at patch resolution;
        0 on the first frame and on padded frames."""
        lo = scores.amin(-1, keepdim=True)
        hi = scores.amax(-1, keepdim=True)
        unit = (scores - lo) / (hi - lo).clamp_min(1e-6)
        rmin = self.cfg.rescale_bias_min
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
        aux = self.aux_loss(scores, inputs) if inputs.training and self.cfg.aux_coef > 0 else None
        return Selection(
            keep=prune_lowest(priority, inputs.n_prune),
            key_bias=self.key_bias(scores, inputs),
            aux_loss=aux,
            scores=scores.detach(),
        )


@REDUCERS.register("oracle")
class OracleReduction(TokenReducer):
    """Upper bound on the synthetic benchmark: keep windows that hold objects, fill by `easy`."""

    needs_divisible_grid = True
    needs_ground_truth = True

    def select(self, inputs: ReductionInputs) -> Selection:
        if inputs.object_mask is None:
            raise ValueError(
                "pruning.method=oracle needs ground-truth object masks in the batch "
                "(object_mask). Fix: set data.ground_truth=true on a dataset that ships them."
            )
        win = inputs.windows
        b, f, s, _ = inputs.object_mask.shape
        cell = s // win.grid * win.window  # pixels per window side
        held = F.max_pool2d(
            inputs.object_mask.flatten(0, 1)[:, None].float(), cell, cell, ceil_mode=True
        ).view(b, f, win.num_windows)
        sim = neighbour_cosine(window_vectors(inputs.embeddings, win))
        sim[:, 0] = -1.0
        priority = -sim + PROTECT * held + padding_priority(inputs.frame_mask, win.num_windows)
        return Selection(keep=prune_lowest(priority, inputs.n_prune), scores=held)
