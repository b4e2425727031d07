"""FastVID: segment the clip by frame similarity, keep salient tokens, merge the rest into density
anchors within each segment (Shen et al., arXiv 2503.11187).

Follows the paper's three steps:
- DySeg: cosine between consecutive frames' global features; a cut after the c−1 lowest
  similarities and wherever the similarity is below τ (`segments` c = 8, `tau` = 0.9);
- per frame, a share (1 − d) of its budget goes to salient tokens, the top by attention (ATS), and
  d to context (`context_share` d = 0.4);
- STPrune/DTM: in each segment the context budget is placed on anchor frames, every `anchor_step`
  (p = 4)-th frame counting back from the segment's end; an anchor frame's anchors are its
  non-salient tokens of highest DPC-kNN score (ρ·δ with ρ = exp(−mean squared distance to the
  `knn` = 4 nearest, distances over √D, and δ the distance to the nearest denser token); every
  non-salient token of the segment joins its most cosine-similar anchor, and an anchor becomes
  w·anchor + (1 − w)·mean(joined), w = max(1/(count + 1), `alpha` = 0.6).
Survivors stand at their original positions. Training-free.

Changes: our ViT has neither SigLIP's attention-pooling head nor its pooled output, so the global
frame feature is the mean of the frame's connector tokens and the salient score is the attention
row of the frame's mean query in the last ViT block (one probe row beside SDPA, as the MAP head's
single probe; `probe_attention`), summed over each connector window. The budget is K spread
evenly over the real frames; an anchor frame that cannot hold its share passes the rest to the
segment's other anchor frames, then to its other frames, so K is met exactly. Padded frames form
their own segment and take budget only if the real frames cannot hold it.
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
    keep_highest,
    pair_cosine,
    pair_cosine_flops,
    probe_attention,
    probe_attention_flops,
    water_fill,
    window_sum,
)
from core.registry import REDUCERS

if TYPE_CHECKING:
    from core.config.experiment import ExperimentConfig

FAR = 1e4  # a distance above any real one (masked pairs)


@dataclass
class FastVIDConfig:
    """`pruning.fastvid.*` (the paper's DySeg_c, DySeg_tau, STPrune_d, DTM_p, DTM_alpha)."""

    segments: int = 8
    tau: float = 0.9
    context_share: float = 0.4
    anchor_step: int = 4
    alpha: float = 0.6
    knn: int = 4

    def check(self, path: str) -> None:
        for name, low in (("segments", 1), ("anchor_step", 1), ("knn", 1)):
            if getattr(self, name) < low:
                fail(f"{path}.{name}", getattr(self, name), f"must be ≥ {low}", "use the default")
        for name in ("context_share", "alpha"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                fail(f"{path}.{name}", getattr(self, name), "must lie in [0, 1]", "use the default")


def dyseg(similarity: list[float], real: list[bool], segments: int, tau: float) -> list[int]:
    """Segment id of every frame: cuts after the c−1 lowest consecutive similarities and below τ,
    among real neighbours; a cut wherever real and padded frames meet."""
    f = len(real)
    pairs = [t for t in range(f - 1) if real[t] and real[t + 1]]
    lowest = sorted(pairs, key=lambda t: similarity[t])[: max(0, segments - 1)]
    cuts = {t for t in pairs if similarity[t] < tau} | set(lowest)
    cuts |= {t for t in range(f - 1) if real[t] != real[t + 1]}
    ids, current = [], 0
    for t in range(f):
        ids.append(current)
        if t in cuts:
            current += 1
    return ids


def salient_counts(budget: list[int], context_share: float) -> list[int]:
    return [round(k * (1.0 - context_share)) for k in budget]


def anchor_counts(
    segment: list[int], budget: list[int], salient: list[int], per_frame: int, step: int
) -> list[int]:
    """Anchors per frame: each segment's context budget on its anchor frames (every step-th from
    its end), overflow to its other frames."""
    out = [0] * len(segment)
    for seg in sorted(set(segment)):
        frames = [t for t, s in enumerate(segment) if s == seg]
        context = sum(budget[t] - salient[t] for t in frames)
        anchors = frames[::-1][::step]
        others = [t for t in frames if t not in anchors]
        for group in (anchors, others):
            share = water_fill(context, [per_frame - salient[t] for t in group])
            for t, a in zip(group, share, strict=True):
                out[t] += a
            context -= sum(share)
    return out


def dpc_scores(x: torch.Tensor, candidate: torch.Tensor, k: int) -> torch.Tensor:
    """DPC-kNN score ρ·δ of each token among the candidates of its frame (others −1).

    x (..., n, D), candidate (..., n) bool. Distances are Euclidean over √D (squared distances from
    one Gram matrix, 2·n²·D FLOPs); ρ = exp(−mean squared distance to the k nearest candidates,
    itself included); δ = distance to the nearest candidate of higher ρ, the largest distance for
    the densest."""
    gram = x @ x.transpose(-1, -2)
    sq = (gram.diagonal(dim1=-2, dim2=-1)[..., :, None] + gram.diagonal(dim1=-2, dim2=-1)[..., None, :]
          - 2 * gram).clamp_min(0) / x.shape[-1]  # fmt: skip
    pair = candidate[..., :, None] & candidate[..., None, :]
    sq = sq.masked_fill(~pair, FAR)
    near = sq.topk(min(k, sq.shape[-1]), dim=-1, largest=False).values
    finite = near < FAR
    density = torch.exp(-(near * finite).sum(-1) / finite.sum(-1).clamp_min(1))
    dist = sq.sqrt()
    denser = density[..., None, :] > density[..., :, None]
    farthest = dist.masked_fill(~pair, 0).amax(-1)
    delta = dist.masked_fill(~(denser & pair), FAR).amin(-1)
    delta = torch.where(delta >= FAR, farthest, delta)
    return torch.where(candidate, density * delta, -1.0)


@REDUCERS.register("fastvid")
class FastVID(PostViTReducer):
    """DySeg segments, salient tokens per frame, density anchors merged per segment."""

    Config = FastVIDConfig
    display = Display(label="FastVID", short="fastvid", order=66)
    needs_vit_attention = True

    @classmethod
    def plan(cls, cfg: ExperimentConfig, frames: int) -> tuple[list[int], list[int]]:
        """Budget and salient tokens per frame of a full clip."""
        budget = water_fill(cfg.kept_tokens(frames), [cfg.tokens_per_frame] * frames)
        return budget, salient_counts(budget, cfg.pruning.options.context_share)

    @classmethod
    def flops(cls, cfg: ExperimentConfig, flow: TokenFlow) -> int:
        """The probe row of every frame, the consecutive frame cosines (2·d each), a Gram matrix
        per frame (2·P′²·d) and every token's cosine to the clip's C anchors (2·F·P′·C·d)."""
        d = cfg.lm.dim
        budget, salient = cls.plan(cfg, flow.frames)
        anchors = sum(budget) - sum(salient)
        return (
            probe_attention_flops(cfg, flow.frames)
            + pair_cosine_flops(flow.frames - 1, d)
            + flow.frames * 2 * flow.windows**2 * d
            + 2 * flow.full_tokens * anchors * d
        )

    def reduce(self, inputs: PostViTInputs) -> Reduction:
        opts = self.options
        b, f, p, d = inputs.features.shape
        x = inputs.features.detach()  # the scores pick tokens; the merge below carries gradients
        device = x.device
        attention = window_sum(probe_attention(inputs.vit_q, inputs.vit_k), inputs.windows)
        similarity = pair_cosine(x[:, 1:].mean(2), x[:, :-1].mean(2))  # (B, F−1)
        budgets = frame_budgets(inputs.frame_mask, inputs.n_keep, p).tolist()
        saliences, anchors, segments = [], [], []
        for clip, real in enumerate(inputs.frame_mask.tolist()):
            salient = salient_counts(budgets[clip], opts.context_share)
            segment = dyseg(similarity[clip].tolist(), real, opts.segments, opts.tau)
            saliences.append(salient)
            anchors.append(anchor_counts(segment, budgets[clip], salient, p, opts.anchor_step))
            segments.append(segment)
        tie = self.tie_keys(inputs, f * p).view(b, f, p)
        salient = keep_highest(attention, torch.tensor(saliences, device=device), tie)
        score = dpc_scores(x.float(), ~salient, opts.knn)
        anchor = keep_highest(score, torch.tensor(anchors, device=device), tie) & ~salient
        # every non-salient token joins its most similar anchor of the same segment
        flat_anchor = anchor.flatten(1)
        n_anchor = max(1, int(flat_anchor.sum(1).max()))
        slot = torch.argsort((~flat_anchor).to(torch.int8), dim=1, stable=True)[:, :n_anchor]
        slot_valid = flat_anchor.gather(1, slot)  # (B, C)
        seg = torch.tensor(segments, device=device).repeat_interleave(p, 1)  # (B, F·P′)
        flat = inputs.flat
        unit = F.normalize(x.flatten(1, 2).float(), dim=-1)
        anchor_unit = unit.gather(1, slot[..., None].expand(-1, -1, unit.shape[-1]))
        sim = unit @ anchor_unit.transpose(-1, -2)  # (B, F·P′, C)
        same = seg[:, :, None] == seg.gather(1, slot)[:, None, :]
        sim = sim.masked_fill(~(same & slot_valid[:, None, :]), float("-inf"))
        joins = slot.gather(1, sim.argmax(-1))  # anchor token index each token joins
        member = ~salient.flatten(1) & (same & slot_valid[:, None, :]).any(-1)
        target = torch.where(member, joins, -1)
        weight = member.to(flat.dtype)
        summed = torch.zeros_like(flat).scatter_add(
            1, target.clamp_min(0)[..., None].expand_as(flat), flat * weight[..., None]
        )
        count = torch.zeros_like(weight).scatter_add(1, target.clamp_min(0), weight)
        mean = summed / count.clamp_min(1.0)[..., None]
        w = torch.maximum(1.0 / (count + 1.0), torch.full_like(count, opts.alpha))[..., None]
        merged = w * flat + (1 - w) * mean
        tokens = torch.where(flat_anchor[..., None], merged, flat)
        sizes = torch.where(flat_anchor, count.clamp_min(1.0), torch.ones_like(count))
        is_rep = salient.flatten(1) | flat_anchor
        diagnostics = {"segments": float(sum(max(s) + 1 for s in segments) / b)}
        return finish(inputs, tokens, is_rep, sizes, attention, diagnostics)
