"""STTS: a learned spatio-temporal window scorer inside the ViT (arXiv 2603.18004).

After block `prune_at`: attention-pool each window (query = window mean, own weights), concatenate
with the same window of the previous frame (zeros for frame 0), MLP → a logit, score = sigmoid. The
log of the per-frame min-max-rescaled score is an additive key bias in block prune_at+1 (the path by
which the task loss trains the scorer); an auxiliary loss ties the score to the temporal redundancy
target 1 − cos(previous, current) window features. After block prune_at+1 one global top-k per clip
over all its windows removes the lowest-scored windows; the first frame is always kept whole.

The auxiliary loss, two ways (`aux_loss`):
- `bce_logits` (default): BCE-with-logits of the logit against the target clamped to
  [aux_target_floor, 1], the target detached (`aux_stop_gradient`, default true). Its gradient
  σ(logit) − target never vanishes, so the scorer cannot saturate. Deviation from the reference.
- `mse_sigmoid`: MSE of the sigmoid score against the raw target, the reference code's choice
  (with `aux_stop_gradient=false`, its target undetached). On data whose frames repeat exactly, the
  targets are ≈ 0, Adam drives every score to exactly 0 within tens of steps and the gradient dies;
  undetached, the loss then trains the early ViT blocks to make consecutive frames look alike
  (benchmarks/results/stts_ablation.md measures both).

Other choices (documented deviations): the rescale is per frame over its real windows (the
reference rescales per patch row); the previous frame of a clip's first frame is zeros (never a
neighbouring clip); exact ties in the top-k are broken at random per clip (seeded), never in raster
order; `key_bias=false` turns the soft bias off (an ablation). Every step logs the fraction of
saturated scores and of tied priorities; a saturated scorer is named in the cell's warnings.

Settings: `pruning.scorer.{aux_loss, aux_coef, aux_stop_gradient, aux_target_floor, key_bias,
rescale_bias_min, scorer_hidden}`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
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
    tie_keys,
    window_vectors,
)
from core.registry import REDUCERS

if TYPE_CHECKING:
    from core.config.experiment import ExperimentConfig

POOLER_INIT_STD = 0.02


AUX_LOSSES = ("bce_logits", "mse_sigmoid")
SATURATED = 1e-6  # a score this close to 0 or 1 has (almost) no sigmoid gradient left
SATURATION_WARNING = 0.5  # warn when more than this fraction of the scores is saturated


@dataclass
class STTSConfig:
    """`pruning.scorer.*`."""

    aux_loss: str = "bce_logits"
    aux_coef: float = 0.5
    aux_stop_gradient: bool = True
    aux_target_floor: float = 0.01
    key_bias: bool = True
    rescale_bias_min: float = math.exp(-2.0)
    scorer_hidden: int = 0  # 0 → the ViT's MLP width

    def check(self, path: str) -> None:
        if self.aux_loss not in AUX_LOSSES:
            fail(
                f"{path}.aux_loss",
                self.aux_loss,
                "unknown auxiliary loss",
                f"use one of {AUX_LOSSES} (mse_sigmoid is the reference code's)",
            )
        if self.aux_coef < 0:
            fail(f"{path}.aux_coef", self.aux_coef, "must be ≥ 0", "use 0.5 (reference) or 0")
        if not 0.0 <= self.aux_target_floor < 1.0:
            fail(
                f"{path}.aux_target_floor",
                self.aux_target_floor,
                "must lie in [0, 1)",
                "use 0.01",
            )
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

    def logits(self, hidden: torch.Tensor, inputs: ReductionInputs) -> torch.Tensor:
        """(B, F, N, D) → window logits (B, F, W); score = sigmoid, low = redundant/unimportant."""
        win = inputs.windows
        b, f = hidden.shape[:2]
        grouped = win.gather(hidden)  # (B, F, W, w², D)
        valid = win.patch_valid.to(hidden.device).expand(b * f, -1, -1).reshape(-1, win.slots)
        pooled = self.pooler(grouped.flatten(0, 2), valid).view(b, f, win.num_windows, -1)
        prev = torch.cat([torch.zeros_like(pooled[:, :1]), pooled[:, :-1]], dim=1)
        return self.mlp(torch.cat([prev, pooled], dim=-1)).squeeze(-1)

    def aux_loss(self, logits: torch.Tensor, inputs: ReductionInputs) -> torch.Tensor:
        """The auxiliary loss (see the module docstring) over frames t ≥ 1 whose both frames are
        real."""
        opts = self.options
        vec = window_vectors(inputs.hidden, inputs.windows)
        target = 1.0 - neighbour_cosine(vec)
        if opts.aux_stop_gradient:
            target = target.detach()
        fm = inputs.frame_mask
        pair = torch.zeros_like(fm)
        pair[:, 1:] = fm[:, 1:] & fm[:, :-1]
        weight = pair[:, :, None].expand_as(logits).to(logits.dtype)
        target = target.to(logits.dtype)
        if opts.aux_loss == "bce_logits":
            target = target.clamp(opts.aux_target_floor, 1.0)
            err = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        else:
            err = (torch.sigmoid(logits) - target) ** 2
        return opts.aux_coef * (err * weight).sum() / weight.sum().clamp_min(1.0)

    def key_bias(self, scores: torch.Tensor, inputs: ReductionInputs) -> torch.Tensor | None:
        """log of per-frame min-max rescaled scores in [rescale_bias_min, 1], at patch resolution;
        0 on the first frame and on padded frames; None with `key_bias=false`."""
        if not self.options.key_bias:
            return None
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
        logits = self.logits(inputs.hidden, inputs)
        scores = torch.sigmoid(logits)
        w = inputs.windows.num_windows
        priority = scores.detach().float() + padding_priority(inputs.frame_mask, w)
        priority[:, 0] += PROTECT
        aux = (
            self.aux_loss(logits, inputs) if inputs.training and self.options.aux_coef > 0 else None
        )
        terms = None
        if aux is not None:  # the (frame t ≥ 1 with a real t − 1) × window terms aux_loss averages
            fm = inputs.frame_mask
            terms = (fm[:, 1:] & fm[:, :-1]).sum() * w  # a tensor: no host sync
        return Selection(
            keep=prune_lowest(priority, inputs.n_prune, tie_keys(inputs, self.cfg.seed)),
            key_bias=self.key_bias(scores, inputs),
            aux_loss=aux,
            aux_terms=terms,
            scores=scores.detach(),
            diagnostics=score_health(scores.detach(), inputs.frame_mask),
        )

    @classmethod
    def warnings(cls, stats: dict[str, float]) -> list[str]:
        """A saturated scorer (its scores stuck at 0 or 1: no gradient, ties broken at random)."""
        share = stats.get("reducer/saturated_fraction")
        if share is None or share <= SATURATION_WARNING:
            return []
        return [
            f"STTS scorer saturated: {share:.0%} of its evaluation scores are within {SATURATED} "
            "of 0 or 1 (its selection is then close to random). Fix: the default "
            "pruning.scorer.aux_loss=bce_logits with aux_stop_gradient=true, or aux_coef=0."
        ]


def score_health(scores: torch.Tensor, frame_mask: torch.Tensor) -> dict[str, float]:
    """Fractions of the real frames' scores that are saturated, and that tie with another score of
    the same clip (frame 0 excluded: it is protected anyway)."""
    if scores.device.type == "meta":  # shapes only (FLOP counting): nothing to report
        return {}
    real = frame_mask.clone()
    real[:, 0] = False
    values = scores[real]  # (real windows of frames ≥ 1,)
    if values.numel() == 0:
        return {"saturated_fraction": 0.0, "tied_fraction": 0.0}
    saturated = ((values < SATURATED) | (values > 1 - SATURATED)).float().mean()
    tied, total = 0, 0
    for b in range(scores.shape[0]):
        clip = scores[b][real[b]].flatten()
        if clip.numel():
            tied += clip.numel() - torch.unique(clip).numel()
            total += clip.numel()
    return {"saturated_fraction": float(saturated), "tied_fraction": tied / max(total, 1)}
