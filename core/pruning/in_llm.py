"""The in-LLM stage: visual tokens dropped between LLM layers, ranked by one attention row.

An in-LLM reducer leaves the vision side whole: every visual token reaches the LLM input
(`ExperimentConfig.effective_ratio` is 0 for it, so the vision tower builds no reducer). It hands
the fusion arch a `DropPlan` instead: before LLM layer `step.layer` only the `step.keep` visual
tokens that the probing query attended to most survive; the later layers (and so the KV cache a
decoder would keep for them) never see the others. The arch asks for that attention with an
`AttentionProbe` in the attention call that ranks the drop (`FusionModel.probe_layer`: the layer
before it in a residual arch, the last cross-attention block before it in `cross_attention`), so
the model's attention stays on the SDPA fast path and one q·kᵀ row is all the extra work.

Budget: `pruning.ratio` is the fraction of a clip's visual tokens removed by the end of the plan:
after the last drop exactly `budget.kept_tokens(F, P′, ratio, prune_from_frame)` remain, the count
an in-ViT or post-ViT method hands to the LLM input at the same ratio. The layer-averaged kept
fraction (`TokenFlow.llm_kept_fraction`, in the FLOPs breakdown and the cell's result) says how
much of the LLM really ran on fewer tokens. One-frame inputs (images) are never dropped from.

The probing query is the last prompt token (`probe_query`): the position whose next-token label is
the first answer token, i.e. the last token a prefill sees at inference. Teacher-forced training
and evaluation therefore rank with the same query as generation would, never with an answer
token. Padded frames' tokens are ranked below every real token, so they go first. A clip with r
real frames keeps its own plan's counts (`plan(r)`, the budget kept_tokens(r)) valid at each drop:
the batch keeps the batch plan's shapes, and a short clip's least attended survivors beyond its
own count become masked filler (`within_clip_budget`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from core import budget
from core.config._build import fail
from core.extensions import TokenFlow
from core.models.attention import AttentionProbe
from core.pruning.base import Stage, TokenReducer
from core.registry import FUSION_ARCHS, VISION_ENCODERS

if TYPE_CHECKING:
    from core.config.experiment import ExperimentConfig
    from core.config.pruning import PruningConfig

IGNORE_INDEX = -100


@dataclass(frozen=True)
class DropStep:
    """Before LLM layer `layer` (≥ 1) the visual tokens are cut to `keep`."""

    layer: int
    keep: int


@dataclass(frozen=True)
class DropPlan:
    """All drops of one clip shape: `tokens` visual tokens enter the LLM, then each step cuts."""

    tokens: int
    steps: tuple[DropStep, ...] = ()

    def step_at(self, layer: int) -> DropStep | None:
        """The drop that happens right before `layer`, if any."""
        return next((s for s in self.steps if s.layer == layer), None)

    def visual_per_layer(self, n_layers: int) -> list[int]:
        """Visual tokens each of the `n_layers` layers runs on."""
        counts, current = [], self.tokens
        for layer in range(n_layers):
            step = self.step_at(layer)
            current = step.keep if step is not None else current
            counts.append(current)
        return counts


def probe_query(labels: torch.Tensor | None, text_mask: torch.Tensor) -> torch.Tensor:
    """(B,) text position of the probing query: the last prompt token (the position whose label is
    the first answer token); a clip without labels or supervised positions uses its last real
    text token (position 0 when it has none)."""
    last_real = (text_mask.long().sum(1) - 1).clamp_min(0)
    if labels is None:
        return last_real
    supervised = labels != IGNORE_INDEX
    first = supervised.long().argmax(1)
    return torch.where(supervised.any(1), first, last_real)


def rank_visual(row: torch.Tensor, valid: torch.Tensor, keep: int) -> torch.Tensor:
    """row (B, K) attention on the visual tokens, valid (B, K) → (B, keep) indices of the kept
    tokens in their original order: the most attended valid ones; padded tokens rank below every
    valid one; exact ties go to the earlier token (a stable sort)."""
    score = torch.where(valid, row.float(), torch.full_like(row, -1.0, dtype=torch.float32))
    order = torch.argsort(score, dim=1, descending=True, stable=True)
    return order[:, :keep].sort(dim=1).values


def within_clip_budget(
    row: torch.Tensor, valid: torch.Tensor, sel: torch.Tensor, limit: torch.Tensor
) -> torch.Tensor:
    """(B, keep) bool: which of the selected tokens `sel` (from `rank_visual` on row, valid) are
    among their clip's `limit` (B,) most attended, in rank_visual's order (ties: the earlier)."""
    score = torch.where(valid, row.float(), torch.full_like(row, -1.0, dtype=torch.float32))
    picked = score.gather(1, sel)
    order = torch.argsort(picked, dim=1, descending=True, stable=True)
    ranks = torch.arange(sel.shape[1], device=sel.device).expand_as(order)
    rank = torch.empty_like(order).scatter_(1, order, ranks)
    return rank < limit.to(sel.device)[:, None]


class InLLMReducer(TokenReducer):
    """Base class of the in-LLM reducers: a subclass declares where it drops (`drop_layers`) and
    how many it keeps at each drop (`keep_counts`); ranking and carrying are shared.

    `keeps_positions`: survivors keep their RoPE position ids (gaps where tokens were dropped) or
    the sequence is renumbered 0..S′−1 after each drop.
    """

    stage = Stage.IN_LLM
    keeps_positions: ClassVar[bool] = True
    layers_key: ClassVar[str] = "layer"  # the option that sets the drop layers (for messages)
    kept_per_frame_refusal = "removes nothing in the ViT"

    def __init__(self, cfg: PruningConfig, vit_dim: int = 0, vit_mlp_dim: int = 0) -> None:
        super().__init__(cfg, vit_dim, vit_mlp_dim)
        self.n_layers = 0
        self.per_frame = 0

    @classmethod
    def for_experiment(cls, cfg: ExperimentConfig) -> InLLMReducer:
        """The reducer bound to the LLM depth and token geometry it plans for."""
        reducer = cls(cfg.pruning)
        reducer.n_layers, reducer.per_frame = cfg.lm.n_layers, cfg.tokens_per_frame
        return reducer

    # ---- what a method declares ------------------------------------------------------------------
    @classmethod
    def drop_layers(cls, options: Any, n_layers: int) -> list[int]:
        """The layers (increasing, in 1..n_layers−1) that start without the dropped tokens."""
        raise TypeError(f"{cls.__name__} does not define drop_layers()")

    @classmethod
    def keep_counts(cls, options: Any, tokens: int, final: int, drops: int) -> list[int]:
        """Visual tokens kept after each of `drops` drops, non-increasing, ending at `final`."""
        raise TypeError(f"{cls.__name__} does not define keep_counts()")

    # ---- the plan --------------------------------------------------------------------------------
    @classmethod
    def make_plan(
        cls, pruning: PruningConfig, n_layers: int, per_frame: int, frames: int
    ) -> DropPlan:
        tokens = frames * per_frame
        final = budget.kept_tokens(frames, per_frame, pruning.ratio, pruning.prune_from_frame)
        if final >= tokens:
            return DropPlan(tokens)
        layers = cls.drop_layers(pruning.options, n_layers)
        counts = cls.keep_counts(pruning.options, tokens, final, len(layers))
        if counts[-1] != final or any(b > a for a, b in itertools.pairwise([tokens, *counts])):
            raise RuntimeError(f"{cls.__name__}.keep_counts gave {counts} for {tokens} → {final}")
        steps, current = [], tokens
        for layer, keep in zip(layers, counts, strict=True):
            if keep < current:  # a step that removes nothing is no drop (and costs no probe)
                steps.append(DropStep(layer, keep))
                current = keep
        return DropPlan(tokens, tuple(steps))

    @classmethod
    def plan_for(cls, cfg: ExperimentConfig, frames: int) -> DropPlan:
        return cls.make_plan(cfg.pruning, cfg.lm.n_layers, cfg.tokens_per_frame, frames)

    def plan(self, frames: int) -> DropPlan:
        """The plan for a batch of clips of `frames` frames (static per batch)."""
        return self.make_plan(self.cfg, self.n_layers, self.per_frame, frames)

    def clip_limits(self, real_frames: torch.Tensor, frames: int) -> dict[int, torch.Tensor]:
        """{drop layer: (B,) valid tokens each clip keeps after it}: each clip's own plan for its
        real frames (a clip without one counts all `frames`), within the batch's plan; {} when
        every clip has all `frames` (the batch plan is everyone's)."""
        real = [int(r) or frames for r in real_frames.tolist()]
        if all(r == frames for r in real):
            return {}
        batch = self.plan(frames)
        per_clip = {r: self.plan(r).visual_per_layer(self.n_layers) for r in set(real)}
        return {
            step.layer: torch.tensor([min(step.keep, per_clip[r][step.layer]) for r in real])
            for step in batch.steps
        }

    def rank(self, row: torch.Tensor, valid: torch.Tensor, keep: int) -> torch.Tensor:
        """(B, keep) kept visual indices from the probe's attention row on the visual tokens."""
        return rank_visual(row, valid, keep)

    # ---- the extension spec ----------------------------------------------------------------------
    @classmethod
    def stage_flow(cls, cfg: ExperimentConfig, frames: int, text_len: int, vocab: int) -> TokenFlow:
        """Every encoder block and the connector see every token; LLM layer l carries the visual
        tokens the plan leaves it."""
        v = cfg.vision
        depth = VISION_ENCODERS.get(v.type).num_blocks(v)
        n, per_frame = cfg.grid**2, cfg.tokens_per_frame
        plan = cls.plan_for(cfg, frames)
        return TokenFlow(
            frames=frames,
            text_len=text_len,
            vocab=vocab,
            patches=n,
            windows=per_frame,
            vit_blocks=[[n] * frames for _ in range(depth)],
            connector_tokens=frames * per_frame,
            llm_visual=plan.visual_per_layer(cfg.lm.n_layers),
            reduced=bool(plan.steps),
        )

    @classmethod
    def flops(cls, cfg: ExperimentConfig, flow: TokenFlow) -> int:
        """One probe row per drop (`AttentionProbe.flops`) over the keys of the attention that
        ranks it (`FusionModel.probe_keys`); the top-k and the gathers are not counted."""
        arch, lm = FUSION_ARCHS.get(cfg.fusion.arch), cfg.lm
        total = 0
        for step in cls.plan_for(cfg, flow.frames).steps:
            layer = arch.probe_layer(cfg.fusion, cfg.lm.n_layers, step.layer)
            keys = arch.probe_keys(cfg, flow, layer)
            total += AttentionProbe.flops(lm.n_heads, lm.head_dim, keys)
        return total

    @classmethod
    def check_experiment(cls, cfg: ExperimentConfig) -> None:
        """The drop layers must leave a layer to rank with before and to save after, in this
        arch; refused at config time with the reason."""
        p, n_layers = cfg.pruning, cfg.lm.n_layers
        path = f"pruning.{p.method}.{cls.layers_key}"
        value = getattr(p.options, cls.layers_key)
        layers = cls.drop_layers(p.options, n_layers)
        if not layers or layers != sorted(set(layers)) or layers[0] < 1 or layers[-1] >= n_layers:
            fail(
                path,
                value,
                f"drops before LLM layers {layers}, but with lm.n_layers={n_layers} they must be "
                f"increasing and within 1..{n_layers - 1} (layer 0 has nothing to rank with "
                "before it, and a drop before no layer saves nothing)",
                f"choose drop layers between 1 and {n_layers - 1}, or raise lm.n_layers",
            )
        arch = FUSION_ARCHS.get(cfg.fusion.arch)
        for layer in layers:
            refusal = arch.drop_refusal(cfg, layer)
            if refusal is not None:
                problem, fix = refusal
                fail(path, value, problem, f"move the drop layer, or {fix}")
