"""Training-free similarity reducers: `easy` (neighbour cosine) and `heuristic` (running reference).

Both prune the windows most similar to the previous frame's (or the running reference's) first and
protect scene-change frames; when a protected window would be pruned anyway, the scene-change
threshold is lowered by `threshold_step` and the clip retried, at most `max_retries` times.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from core.config._build import fail
from core.extensions import Display, TokenFlow
from core.pruning.base import (
    ReductionInputs,
    Selection,
    TokenReducer,
    neighbour_cosine,
    neighbour_cosine_flops,
    prune_lowest,
    redundancy_priority,
    tie_keys,
    window_vectors,
)
from core.registry import REDUCERS

if TYPE_CHECKING:
    from core.config.experiment import ExperimentConfig


@dataclass
class SimilarityConfig:
    """`pruning.easy.*` / `pruning.heuristic.*`."""

    new_ref_threshold: float = 0.85  # a frame whose mean similarity is below this is a new scene
    threshold_step: float = 0.05
    max_retries: int = 5

    def check(self, path: str) -> None:
        if self.max_retries < 0:
            fail(f"{path}.max_retries", self.max_retries, "must be ≥ 0", "use 5")


class _SimilarityReduction(TokenReducer):
    """Shared retry loop: protect scene-change frames, prune the most redundant windows first."""

    Config = SimilarityConfig
    needs_divisible_grid = True

    @classmethod
    def flops(cls, cfg: ExperimentConfig, flow: TokenFlow) -> int:
        """One cosine pass on the ViT input embeddings (the rare threshold retries repeat it; not
        counted)."""
        return neighbour_cosine_flops(cfg, flow)

    def similarity(self, vec: torch.Tensor, threshold: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """→ (sim (B,F,W), protected (B,F) bool) for per-clip thresholds (B,)."""
        raise TypeError(f"{type(self).__name__} does not define similarity()")

    def select(self, inputs: ReductionInputs) -> Selection:
        opts = self.options
        vec = window_vectors(inputs.embeddings, inputs.windows)
        threshold = torch.full((vec.shape[0],), opts.new_ref_threshold, device=vec.device)
        for attempt in range(opts.max_retries + 1):
            sim, protected = self.similarity(vec, threshold)
            protect = protected[:, :, None].float()
            priority = redundancy_priority(sim, protect, inputs.frame_mask)
            keep = prune_lowest(priority, inputs.n_prune, tie_keys(inputs, self.cfg.seed))
            hit = (~keep & protected[:, :, None] & inputs.frame_mask[:, :, None]).flatten(1).any(1)
            lowered = threshold - opts.threshold_step
            retry = hit & (lowered >= 0)
            if not bool(retry.any()) or attempt == opts.max_retries:
                break
            threshold = torch.where(retry, lowered, threshold)
        return Selection(keep=keep, scores=sim, diagnostics={"threshold": threshold.mean().item()})


@REDUCERS.register("easy")
class EasyReduction(_SimilarityReduction):
    """Cosine of each window with the same window of the previous frame on the ViT input embeddings."""

    display = Display(label="easy", short="easy", order=20)

    def similarity(self, vec: torch.Tensor, threshold: torch.Tensor) -> tuple[torch.Tensor, ...]:
        sim = neighbour_cosine(vec)
        protected = sim.mean(-1) < threshold[:, None]
        protected[:, 0] = True
        return sim, protected


@REDUCERS.register("heuristic")
class HeuristicReduction(_SimilarityReduction):
    """Like `easy`, but each window location compares against a running reference frame."""

    display = Display(label="heuristic", short="heur", order=30)

    def similarity(self, vec: torch.Tensor, threshold: torch.Tensor) -> tuple[torch.Tensor, ...]:
        v = torch.nn.functional.normalize(vec.float(), dim=-1)
        b, f, w, _ = v.shape
        ref = v[:, 0].clone()
        sims = [torch.zeros(b, w, device=v.device)]
        protected = [torch.ones(b, dtype=torch.bool, device=v.device)]
        thr = threshold[:, None]
        for t in range(1, f):
            sim = (v[:, t] * ref).sum(-1)
            new_scene = sim.mean(-1) < threshold
            moved = (sim < thr) | new_scene[:, None]
            ref = torch.where(moved[..., None], v[:, t], ref)
            sims.append(sim)
            protected.append(new_scene)
        return torch.stack(sims, 1), torch.stack(protected, 1)
