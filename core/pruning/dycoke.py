"""DyCoke's temporal token merging stage, TTM (Tao et al., CVPR 2025).

Follows the official `dycole_ttm` as intended: frames are taken in groups of `group` (4); the first
frame of a group is kept whole; frame 1 and frame 2 of a group keep their tokens least
cosine-similar to the same position in frame 0, frame 3 those least similar to frame 2 (generally:
an odd offset compares with the frame before it, an even one with the frame two before). Dropping,
despite the name "merging". Training-free, attention-free. The official snapshot's two slips are not
reproduced (the first pair reading the last pair's similarities, the last group left unpruned).

Changes: the paper's pruning rate is replaced by the shared budget: every real group's first frame
is kept whole and the rest of K is spread evenly over the other real frames (capped at P′), padded
frames last, so the per-frame count follows the budget, not a fixed rate (a budget below the
first frames' tokens is refused at config time); the comparison runs on the connector's output (the
paper: after LLaVA-OV's 2×2 pooling of the projector output). The decoding-time KV-cache pruning
stage is not part of this reducer (it acts in the LLM during generation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from core.config._build import fail
from core.extensions import Display, TokenFlow
from core.pruning.post_vit import (
    PostViTInputs,
    PostViTReducer,
    Reduction,
    keep_highest,
    pair_cosine,
    pair_cosine_flops,
    selection,
    water_fill,
)
from core.registry import REDUCERS

if TYPE_CHECKING:
    from core.config.experiment import ExperimentConfig


@dataclass
class DyCokeConfig:
    """`pruning.dycoke.*`."""

    group: int = 4  # frames per group; the first of each is kept whole

    def check(self, path: str) -> None:
        if self.group < 2:
            fail(f"{path}.group", self.group, "must be ≥ 2", "use 4 (the paper's)")


def reference_frames(frames: int, group: int) -> list[int]:
    """The frame each frame is compared with (itself for a group's first frame)."""
    refs = []
    for t in range(frames):
        offset = t % group
        refs.append(t if offset == 0 else t - 1 if offset % 2 else t - 2)
    return refs


@REDUCERS.register("dycoke")
class DyCoke(PostViTReducer):
    """Keep each group's first frame, then the windows that changed most from their reference."""

    Config = DyCokeConfig
    display = Display(label="DyCoke (TTM)", short="dycoke", order=64)

    @classmethod
    def check_experiment(cls, cfg: ExperimentConfig) -> None:
        frames, group = cfg.data.max_frames, cfg.pruning.options.group
        anchors = -(-frames // group) * cfg.tokens_per_frame
        kept = cfg.kept_tokens()
        if frames > 1 and kept < anchors:
            most = 1 - anchors / (frames * cfg.tokens_per_frame)
            fail(
                "pruning.ratio",
                cfg.pruning.ratio,
                f"keeps {kept} tokens but dycoke keeps the first frame of every group of {group} "
                f"whole ({anchors} tokens over {frames} frames)",
                f"use pruning.ratio ≤ {most:.3f} or a larger pruning.dycoke.group",
            )

    @classmethod
    def flops(cls, cfg: ExperimentConfig, flow: TokenFlow) -> int:
        """One same-position cosine per window of every non-first frame of a group: 2·d each."""
        group = cfg.pruning.options.group
        compared = flow.frames - -(-flow.frames // group)
        return pair_cosine_flops(compared * flow.windows, cfg.lm.dim)

    def budgets(self, inputs: PostViTInputs) -> torch.Tensor:
        """(B, F): real first frames whole, the rest of K evenly over the other real frames, then
        padded frames."""
        b, f, p, _ = inputs.features.shape
        group, rows = self.options.group, []
        for real in inputs.frame_mask.tolist():
            budget, left = [0] * f, inputs.n_keep
            firsts = [t for t in range(f) if real[t] and t % group == 0]
            others = [t for t in range(f) if real[t] and t % group]
            padded = [t for t in range(f) if not real[t]]
            for frames in (firsts, others, padded):
                share = water_fill(left, [p] * len(frames))
                for t, s in zip(frames, share, strict=True):
                    budget[t] = s
                left -= sum(share)
            rows.append(budget)
        return torch.tensor(rows, dtype=torch.long, device=inputs.features.device)

    def reduce(self, inputs: PostViTInputs) -> Reduction:
        b, f, p, _ = inputs.features.shape
        refs = torch.tensor(reference_frames(f, self.options.group), device=inputs.features.device)
        compared = refs != torch.arange(f, device=refs.device)
        sim = torch.full((b, f, p), -2.0, device=inputs.features.device)  # first frames: changed
        sim[:, compared] = pair_cosine(
            inputs.features[:, compared], inputs.features[:, refs[compared]]
        )
        tie = self.tie_keys(inputs, f * p).view(b, f, p)
        keep = keep_highest(-sim, self.budgets(inputs), tie)
        return selection(inputs, keep.flatten(1), sim)
