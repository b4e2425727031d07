"""Training-free reducers: none, random, easy (neighbour cosine), heuristic (running reference)."""

from __future__ import annotations

import hashlib

import torch

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


@REDUCERS.register("none")
class NoReduction(TokenReducer):
    """Keeps everything (the unpruned model)."""

    def select(self, inputs: ReductionInputs) -> Selection:
        b, f = inputs.frame_mask.shape
        keep = torch.ones(
            b, f, inputs.windows.num_windows, dtype=torch.bool, device=inputs.frame_mask.device
        )
        return Selection(keep=keep)


def _sample_seed(seed: int, key: int, step: int) -> int:
    blob = f"{seed}:{key}:{step}".encode()
    return int.from_bytes(hashlib.blake2b(blob, digest_size=8).digest(), "little") & (2**63 - 1)


@REDUCERS.register("random")
class RandomReduction(TokenReducer):
    """Uniform over the valid windows of each clip; the first frame is not protected.

    The draw for a clip depends only on (pruning.seed, the clip's key, the training step; step −1 at
    eval), so it is reproducible, resumable and independent of the rest of the batch.
    """

    def select(self, inputs: ReductionInputs) -> Selection:
        b, f = inputs.frame_mask.shape
        w = inputs.windows.num_windows
        keys = inputs.sample_keys.tolist() if inputs.sample_keys is not None else list(range(b))
        step = inputs.step if inputs.training else -1
        draws = []
        for key in keys:
            gen = torch.Generator().manual_seed(_sample_seed(self.cfg.seed, int(key), step))
            draws.append(torch.rand(f, w, generator=gen))
        priority = torch.stack(draws).to(inputs.frame_mask.device)
        priority = priority + padding_priority(inputs.frame_mask, w)
        return Selection(keep=prune_lowest(priority, inputs.n_prune), scores=priority)


class _SimilarityReduction(TokenReducer):
    """Shared retry loop: protect scene-change frames, prune the most redundant windows first."""

    needs_divisible_grid = True

    def similarity(self, vec: torch.Tensor, threshold: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """→ (sim (B,F,W), protected (B,F) bool) for per-clip thresholds (B,)."""
        raise TypeError(f"{type(self).__name__} does not define similarity()")

    def select(self, inputs: ReductionInputs) -> Selection:
        vec = window_vectors(inputs.embeddings, inputs.windows)
        b, f, w = vec.shape[:3]
        pad = padding_priority(inputs.frame_mask, w)
        threshold = torch.full((b,), self.cfg.new_ref_threshold, device=vec.device)
        for attempt in range(self.cfg.max_retries + 1):
            sim, protected = self.similarity(vec, threshold)
            priority = -sim + PROTECT * protected[:, :, None].float() + pad
            keep = prune_lowest(priority, inputs.n_prune)
            hit = (~keep & protected[:, :, None] & inputs.frame_mask[:, :, None]).flatten(1).any(1)
            lowered = threshold - self.cfg.threshold_step
            retry = hit & (lowered >= 0)
            if not bool(retry.any()) or attempt == self.cfg.max_retries:
                break
            threshold = torch.where(retry, lowered, threshold)
        return Selection(keep=keep, scores=sim, diagnostics={"threshold": threshold.mean().item()})


@REDUCERS.register("easy")
class EasyReduction(_SimilarityReduction):
    """Cosine of each window with the same window of the previous frame on the ViT input embeddings."""

    def similarity(self, vec: torch.Tensor, threshold: torch.Tensor) -> tuple[torch.Tensor, ...]:
        sim = neighbour_cosine(vec)
        protected = sim.mean(-1) < threshold[:, None]
        protected[:, 0] = True
        return sim, protected


@REDUCERS.register("heuristic")
class HeuristicReduction(_SimilarityReduction):
    """Like `easy`, but each window location compares against a running reference frame."""

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
