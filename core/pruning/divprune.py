"""DivPrune: max–min diversity selection of visual tokens (Alvar et al., CVPR 2025).

Follows the paper's code: distances are 1 − cosine over all of the clip's visual tokens at once
(the video is one input); the first pick is the token farthest from its nearest neighbour, then the
token whose minimum distance to the chosen set is largest is added until the budget is filled (a
greedy solution of the max–min diversity problem). Attention-free and training-free; ties go to the
lowest index as with the code's argmax.

Changes: it acts on the connector's output (the paper: the projector's output at the LLM input,
the same point); padded frames' tokens are chosen only once every real token is; the greedy loop
runs for every clip of the batch at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from core.extensions import Display, TokenFlow
from core.pruning.post_vit import PostViTInputs, PostViTReducer, Reduction, selection
from core.registry import REDUCERS

if TYPE_CHECKING:
    from core.config.experiment import ExperimentConfig

FAR = 4.0  # above any cosine distance (≤ 2)


def max_min_diverse(dist: torch.Tensor, k: int, real: torch.Tensor) -> torch.Tensor:
    """dist (B, n, n) pairwise distances, real (B, n) bool → (B, n) bool: k tokens per row chosen
    greedily (farthest-from-nearest first, then max of the min distance to the chosen set); padded
    tokens only after every real one."""
    b, n, _ = dist.shape
    eye = torch.eye(n, dtype=torch.bool, device=dist.device)
    nearest = dist.masked_fill(eye, FAR).amin(-1)  # distance to the nearest other token
    handicap = (~real).to(dist.dtype) * (-2 * FAR)
    chosen = torch.zeros(b, n, dtype=torch.bool, device=dist.device)
    score = nearest  # the first pick; then the distance to the closest chosen token
    closest = torch.full_like(nearest, FAR)
    rows = torch.arange(b, device=dist.device)
    for _ in range(k):
        pick = (score + handicap).masked_fill(chosen, -8 * FAR).argmax(-1)
        chosen[rows, pick] = True
        closest = score = torch.minimum(closest, dist[rows, pick])
    return chosen


@REDUCERS.register("divprune")
class DivPrune(PostViTReducer):
    """Keep the K most mutually diverse tokens of each clip."""

    display = Display(label="DivPrune", short="div", order=62)

    @classmethod
    def flops(cls, cfg: ExperimentConfig, flow: TokenFlow) -> int:
        """The clip's cosine matrix: 2·(F·P′)²·d over the LLM-width tokens (the greedy loop takes
        minima, no products)."""
        return 2 * flow.full_tokens**2 * cfg.lm.dim

    def reduce(self, inputs: PostViTInputs) -> Reduction:
        x = F.normalize(inputs.flat.detach().float(), dim=-1)
        dist = 1.0 - x @ x.transpose(-1, -2)
        real = inputs.frame_mask.repeat_interleave(inputs.windows.num_windows, dim=1)
        return selection(inputs, max_min_diverse(dist, inputs.n_keep, real))
