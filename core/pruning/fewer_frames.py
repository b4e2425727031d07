"""`fewer_frames`: uniform temporal subsampling to the same token count, before the ViT.

The baseline papers show is strong (VTC-Bench: temporal stride at the same token budget), and the
honest one for a video VLM: the frames it drops are never decoded into tokens, so the ViT saves as
much as the LLM. A clip keeping K tokens encodes m = ⌈K/P′⌉ frames spread uniformly over its real
frames (the centres of m equal spans); all of their windows reach the LLM except in one partial frame
(the last chosen; a padded frame when one had to be chosen), which keeps the K − (m−1)·P′ windows
spaced evenly in raster order.

Follows: a temporal stride at equal token count. Changes: a budget that is not a whole number of
frames fills the remainder from one partially kept frame (its ViT still runs on all patches, and is
counted so).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from core.extensions import Display, TokenFlow
from core.pruning.pre_vit import FramePlan, PreViTInputs, PreViTReducer
from core.registry import REDUCERS

if TYPE_CHECKING:
    from core.config.experiment import ExperimentConfig


def spaced(count: int, total: int) -> list[int]:
    """`count` of range(total) spaced evenly (centres of equal spans)."""
    return [(2 * i + 1) * total // (2 * count) for i in range(count)]


def uniform_frames(real: list[bool], m: int) -> list[int]:
    """m frames of a clip, uniform over its real frames (padded ones only when too few are real)."""
    frames = [i for i, r in enumerate(real) if r]
    padded = [i for i, r in enumerate(real) if not r]
    if len(frames) >= m:
        return [frames[i] for i in spaced(m, len(frames))]
    return sorted(frames + padded[: m - len(frames)])


@REDUCERS.register("fewer_frames")
class FewerFrames(PreViTReducer):
    """Encode only ⌈K/P′⌉ uniformly spaced frames."""

    display = Display(label="fewer frames", short="frames", order=12)

    @classmethod
    def flops(cls, cfg: ExperimentConfig, flow: TokenFlow) -> int:
        """Index arithmetic only: 0 (the saving shows in the encoder's own cost)."""
        return 0

    def plan(self, inputs: PreViTInputs) -> FramePlan:
        p = inputs.windows.num_windows
        m = self.encoded_frames(inputs.n_keep, p)
        partial = inputs.n_keep - (m - 1) * p
        frames, keeps = [], []
        for real in inputs.frame_mask.tolist():
            chosen = uniform_frames(real, m)
            keep = [[True] * p for _ in chosen]
            padded = [j for j, frame in enumerate(chosen) if not real[frame]]
            last = padded[-1] if padded else m - 1
            keep[last] = [False] * p
            for w in spaced(partial, p):
                keep[last][w] = True
            frames.append(chosen)
            keeps.append(keep)
        device = inputs.frame_mask.device
        return FramePlan(
            frames=torch.tensor(frames, dtype=torch.long, device=device),
            keep=torch.tensor(keeps, dtype=torch.bool, device=device),
        )
