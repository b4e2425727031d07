"""The post-ViT stage: reducers over a clip's visual tokens after the connector, before fusion.

The encoder and the connector run on every patch and window of every frame (their cost is the
unpruned one); the reducer then turns the clip's F·P′ connector tokens into exactly K tokens
(`core.budget.kept_tokens`, the same budget as every other stage) by selecting and/or merging. Each
output token stands at a representative (frame, window) — a merge's anchor — and carries its size,
the number of connector tokens it represents. Every decision is per clip, so a clip's tokens do not
depend on the rest of its batch; padded frames take budget only after every real frame is full.

Reducers that read the ViT's attention (`needs_vit_attention`) get the last block's queries and
keys (what its fused SDPA call consumed) and compute only the scores they need beside it:
`received_attention` (the mean attention each patch receives over heads and queries, in query
chunks, never a stored (N, N) matrix per head and frame) or `probe_attention` (one mean-query row).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F

from core.extensions import TokenFlow
from core.layers.windows import WindowGrid
from core.pruning.base import (
    Stage,
    TokenReducer,
    clip_flow,
    clip_generator,
)
from core.registry import VISION_ENCODERS

if TYPE_CHECKING:
    from core.config.experiment import ExperimentConfig

CHUNK_ELEMENTS = 1 << 24  # attention logits held at once by `received_attention`
LOW = -1e9  # a priority below every real one (padded frames' tokens go last)


@dataclass
class PostViTInputs:
    """What a post-ViT reducer may look at, all per clip."""

    features: torch.Tensor  # (B, F, P′, D) connector outputs, before the frame embedding
    frame_mask: torch.Tensor  # (B, F) bool
    windows: WindowGrid
    n_keep: int  # K tokens per clip after the reducer
    training: bool
    step: int = 0
    sample_keys: torch.Tensor | None = None  # (B,) int64 stable per clip
    vit_q: torch.Tensor | None = None  # (B, F, H, N, dh) last ViT block, detached
    vit_k: torch.Tensor | None = None  # (B, F, H, N, dh)

    @property
    def flat(self) -> torch.Tensor:
        """(B, F·P′, D): the clip's tokens in frame order, windows in raster order."""
        return self.features.flatten(1, 2)


@dataclass
class Reduction:
    """K tokens per clip in (frame, window) order of their representatives."""

    features: torch.Tensor  # (B, K, D)
    frame_index: torch.Tensor  # (B, K) long: representative's frame
    window_index: torch.Tensor  # (B, K) long: representative's window
    valid: torch.Tensor  # (B, K) bool: the representative's frame is real
    sizes: torch.Tensor  # (B, K) float: connector tokens each token represents
    keep: torch.Tensor  # (B, F, P′) bool: representatives (the keep map the figures draw)
    scores: torch.Tensor | None = None
    diagnostics: dict[str, Any] = field(default_factory=dict)


class PostViTReducer(TokenReducer):
    """Base class of the post-ViT reducers: implement `reduce`; declare `needs_vit_attention`
    when it reads the last ViT block's queries and keys."""

    stage: ClassVar[Stage] = Stage.POST_VIT
    needs_vit_attention: ClassVar[bool] = False
    kept_per_frame_refusal = "acts after the ViT, which runs unpruned"

    def reduce(self, inputs: PostViTInputs) -> Reduction:
        """K tokens per clip from its F·P′; subclasses override."""
        raise TypeError(f"{type(self).__name__} does not define reduce()")

    @classmethod
    def stage_flow(cls, cfg: ExperimentConfig, frames: int, text_len: int, vocab: int) -> TokenFlow:
        """Every encoder block on all N patches of every frame, the connector on all F·P′
        windows, every LLM layer on the K kept tokens."""
        depth = VISION_ENCODERS.get(cfg.vision.type).num_blocks(cfg.vision)
        blocks = [[cfg.grid**2] * frames for _ in range(depth)]
        return clip_flow(cfg, frames, text_len, vocab, blocks, frames * cfg.tokens_per_frame)

    def tie_keys(self, inputs: PostViTInputs, n: int) -> torch.Tensor:
        """(B, n) random keys per clip from (pruning.seed, clip key, step; −1 at evaluation) that
        break exact score ties (never raster order), whatever else is in the batch."""
        b = inputs.frame_mask.shape[0]
        keys = inputs.sample_keys.tolist() if inputs.sample_keys is not None else list(range(b))
        step = inputs.step if inputs.training else -1
        draws = [torch.rand(n, generator=clip_generator(self.cfg.seed, int(k), step)) for k in keys]
        return torch.stack(draws).to(inputs.frame_mask.device)


# ---- budgets ------------------------------------------------------------------------------------
def water_fill(total: int, caps: list[int]) -> list[int]:
    """Spread `total` as evenly as integers allow over slots holding at most caps[i] each, earlier
    slots taking the remainder; the amounts sum to min(total, Σ caps)."""
    out = [0] * len(caps)
    left = total
    while left > 0:
        room = [i for i, c in enumerate(caps) if out[i] < c]
        if not room:
            break
        share, extra = divmod(left, len(room))
        for rank, i in enumerate(room):
            add = min(caps[i] - out[i], share + (1 if rank < extra else 0))
            out[i] += add
            left -= add
    return out


def apportion(shares: list[float], total: int, cap: int) -> list[int]:
    """Integers ≤ cap close to `shares` summing to min(total, cap·len): floors, then the largest
    remainders, then what capping left over spread evenly over slots with room."""
    shares = [min(float(cap), max(0.0, s)) for s in shares]
    out = [math.floor(s) for s in shares]
    order = sorted(range(len(shares)), key=lambda i: -(shares[i] - out[i]))
    for i in order:
        if sum(out) >= total:
            break
        if out[i] < cap:
            out[i] += 1
    left = total - sum(out)
    if left > 0:
        out = [o + e for o, e in zip(out, water_fill(left, [cap - o for o in out]), strict=True)]
    return out


def frame_budgets(frame_mask: torch.Tensor, total: int, per_frame: int) -> torch.Tensor:
    """(B, F) tokens each frame keeps: `total` spread evenly over the real frames (capped at
    per_frame), then what they cannot hold over the padded frames."""
    rows = []
    for real in frame_mask.tolist():
        budget = [0] * len(real)
        left = total
        for group in (
            [i for i, r in enumerate(real) if r],
            [i for i, r in enumerate(real) if not r],
        ):
            share = water_fill(left, [per_frame] * len(group))
            for i, s in zip(group, share, strict=True):
                budget[i] = s
            left -= sum(share)
        rows.append(budget)
    return torch.tensor(rows, dtype=torch.long, device=frame_mask.device)


def keep_highest(
    score: torch.Tensor, counts: torch.Tensor, tie_break: torch.Tensor | None = None
) -> torch.Tensor:
    """score (..., n), counts (...) → bool mask of the counts[...] highest of each row; exact ties
    by `tie_break` keys shaped like `score`, else by position."""
    flat = score.float()
    if tie_break is None:
        order = torch.argsort(-flat, dim=-1, stable=True)
    else:  # lexicographic (score, tie_break): shuffle by the keys, then a stable sort
        shuffle = torch.argsort(tie_break.to(flat.device), dim=-1)
        order = shuffle.gather(-1, torch.argsort(-flat.gather(-1, shuffle), dim=-1, stable=True))
    ranks = torch.arange(order.shape[-1], device=order.device).expand_as(order)
    rank = torch.empty_like(order).scatter_(-1, order, ranks)
    return rank < counts[..., None]


# ---- merging and the output ---------------------------------------------------------------------
def group_mean(
    features: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted mean of the tokens assigned to each target.

    features (B, n, D); target (B, n) long: the index each token merges into, −1 for a dropped
    token; weight (B, n) (default 1). → (means at the target positions (B, n, D), total weight
    there (B, n)); positions nothing merged into get zeros."""
    w = torch.ones_like(target, dtype=features.dtype) if weight is None else weight
    w = w * (target >= 0)
    idx = target.clamp_min(0)
    sums = torch.zeros_like(features).scatter_add(
        1, idx[..., None].expand_as(features), features * w[..., None]
    )
    total = torch.zeros_like(w).scatter_add(1, idx, w)
    return sums / total.clamp_min(1e-12)[..., None], total


def finish(
    inputs: PostViTInputs,
    tokens: torch.Tensor,
    is_rep: torch.Tensor,
    sizes: torch.Tensor,
    scores: torch.Tensor | None = None,
    diagnostics: dict[str, Any] | None = None,
) -> Reduction:
    """The K representatives of each clip (tokens (B, F·P′, D) hold their values, is_rep (B, F·P′)
    marks them, sizes (B, F·P′)), in (frame, window) order."""
    b, n = is_rep.shape
    k, per_frame = inputs.n_keep, inputs.windows.num_windows
    if is_rep.device.type != "meta":
        counts = is_rep.sum(1)
        if not bool((counts == k).all()):
            raise RuntimeError(f"post-ViT reducer kept {counts.tolist()} tokens, budget says {k}")
    pos = torch.arange(n, device=is_rep.device).expand(b, n)
    order = torch.argsort(torch.where(is_rep, pos, pos + n), dim=1)[:, :k]
    features = tokens.gather(1, order[..., None].expand(-1, -1, tokens.shape[-1]))
    frame = order // per_frame
    return Reduction(
        features=features,
        frame_index=frame,
        window_index=order % per_frame,
        valid=inputs.frame_mask.gather(1, frame),
        sizes=sizes.gather(1, order).to(torch.float32),
        keep=is_rep.view(b, -1, per_frame),
        scores=scores,
        diagnostics=diagnostics or {},
    )


def selection(inputs: PostViTInputs, keep: torch.Tensor, scores: torch.Tensor | None = None):
    """A pure selection (keep (B, F·P′) bool, K per clip) as a Reduction of size-1 tokens."""
    return finish(inputs, inputs.flat, keep, torch.ones_like(keep, dtype=torch.float32), scores)


def pair_cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise cosine of (..., D) pairs as one small matrix product per pair (2·D FLOPs each); a
    selection score, so no gradient."""
    a, b = F.normalize(a.detach().float(), dim=-1), F.normalize(b.detach().float(), dim=-1)
    return (a[..., None, :] @ b[..., :, None])[..., 0, 0]


def pair_cosine_flops(pairs: int, dim: int) -> int:
    """`pair_cosine` on `pairs` pairs of width `dim`."""
    return pairs * 2 * dim


# ---- ViT attention, computed beside SDPA --------------------------------------------------------
def received_attention(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """q, k (..., H, N, dh) → (..., N): softmax(q·kᵀ/√dh) averaged over heads and queries, the
    attention each key receives. Logits are formed in query chunks (at most CHUNK_ELEMENTS at once)
    and reduced at once: 2·N²·H·dh FLOPs per frame, like one extra QKᵀ of the block."""
    lead, (h, n, dh) = q.shape[:-3], q.shape[-3:]
    q2 = q.reshape(-1, h, n, dh).float() * dh**-0.5
    k2 = k.reshape(-1, h, n, dh).float()
    step = max(1, CHUNK_ELEMENTS // max(1, q2.shape[0] * h * n))
    total = q2.new_zeros(q2.shape[0], h, n)
    for start in range(0, n, step):
        logits = q2[:, :, start : start + step] @ k2.transpose(-1, -2)
        total = total + logits.softmax(-1).sum(-2)
    return (total.mean(1) / n).reshape(*lead, n)


def received_attention_flops(cfg: ExperimentConfig, frames: int) -> int:
    """`received_attention` on the last ViT block of every frame: 2·N²·D per frame."""
    return frames * 2 * (cfg.grid**2) ** 2 * cfg.vision.dim


def probe_attention(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """q, k (..., H, N, dh) → (..., N): the attention row of the frame's mean query (a probe, as a
    MAP head's), averaged over heads: 2·N·H·dh FLOPs per frame."""
    dh = q.shape[-1]
    probe = q.float().mean(-2, keepdim=True) * dh**-0.5
    return (probe @ k.float().transpose(-1, -2)).softmax(-1).mean(-3)[..., 0, :]


def probe_attention_flops(cfg: ExperimentConfig, frames: int) -> int:
    """`probe_attention` on every frame: 2·N·D per frame."""
    return frames * 2 * cfg.grid**2 * cfg.vision.dim


def window_sum(x: torch.Tensor, windows: WindowGrid) -> torch.Tensor:
    """(..., N) per-patch values → (..., P′) summed over each window's patches."""
    idx = windows.window_of_patch.to(x.device)
    out = x.new_zeros(*x.shape[:-1], windows.num_windows)
    return out.index_add_(-1, idx, x)


def window_mean(x: torch.Tensor, windows: WindowGrid) -> torch.Tensor:
    """(..., N, E) per-patch vectors → (..., P′, E) averaged over each window's patches."""
    idx = windows.window_of_patch.to(x.device)
    out = x.new_zeros(*x.shape[:-2], windows.num_windows, x.shape[-1])
    out = out.index_add_(-2, idx, x)
    return out / windows.window_sizes.to(x.device, x.dtype)[:, None]


def head_mean_keys(inputs: PostViTInputs) -> torch.Tensor:
    """(B, F, P′, dh): the last block's keys averaged over heads, then over each window."""
    return window_mean(inputs.vit_k.float().mean(-3), inputs.windows)
