"""`pool`: spatial average pooling of each frame's connector tokens down to the same token count.

The plain baseline that VTC-Bench finds hard to beat (downsampling "consistently outperforms many
advanced compression methods"): content-blind, attention-free, the same rectangles for every clip.

Follows: average pooling of the connector's token grid (Molmo2's 9×9 → 5×5 or 4×4), each pooled
token the mean of its rectangle, after the connector. Changes: the number of rectangles per frame is
set by the budget (K spread evenly over the real frames), not a fixed s×s grid, so any K is met
exactly: a frame keeping k tokens is cut into about √k horizontal bands, each split into a number of
columns proportional to its height, the counts summing to k (a budget k = s² is exactly an s×s
average pool). Each pooled token stands at its
rectangle's top-left window and has the rectangle's size.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING

import torch

from core.extensions import Display, TokenFlow
from core.pruning.post_vit import (
    PostViTInputs,
    PostViTReducer,
    Reduction,
    apportion,
    finish,
    frame_budgets,
    group_mean,
)
from core.registry import REDUCERS

if TYPE_CHECKING:
    from core.config.experiment import ExperimentConfig


@functools.lru_cache(maxsize=256)
def pooling_targets(side: int, k: int) -> tuple[int, ...]:
    """For a side×side window grid pooled to k rectangles: the top-left window of each window's
    rectangle (raster ids); −1 for every window when k = 0."""
    if k <= 0:
        return (-1,) * (side * side)
    rows = min(side, max(math.ceil(k / side), round(math.sqrt(k))))
    heights = [(band + 1) * side // rows - band * side // rows for band in range(rows)]
    columns = apportion([k * h / side for h in heights], k, side)  # wider bands, more columns
    for band, cols in enumerate(columns):
        if cols == 0:  # a band too thin for its share still gets one rectangle
            columns[columns.index(max(columns))] -= 1
            columns[band] = 1
    target = [0] * (side * side)
    for band, cols in enumerate(columns):
        y0, y1 = band * side // rows, (band + 1) * side // rows
        for c in range(cols):
            x0, x1 = c * side // cols, (c + 1) * side // cols
            for y in range(y0, y1):
                for x in range(x0, x1):
                    target[y * side + x] = y0 * side + x0
    return tuple(target)


@REDUCERS.register("pool")
class SpatialPool(PostViTReducer):
    """Average-pool each frame's token grid to its share of the budget."""

    display = Display(label="spatial pool", short="pool", order=14)

    @classmethod
    def flops(cls, cfg: ExperimentConfig, flow: TokenFlow) -> int:
        """Averages only, no matrix product: 0."""
        return 0

    def reduce(self, inputs: PostViTInputs) -> Reduction:
        b, f, p, _ = inputs.features.shape
        side = inputs.windows.per_side
        budgets = frame_budgets(inputs.frame_mask, inputs.n_keep, p).tolist()
        rows = []
        for clip in budgets:
            row = []
            for frame, k in enumerate(clip):
                row += [t if t < 0 else frame * p + t for t in pooling_targets(side, k)]
            rows.append(row)
        target = torch.tensor(rows, dtype=torch.long, device=inputs.features.device)
        means, sizes = group_mean(inputs.flat, target)
        is_rep = target == torch.arange(f * p, device=target.device)
        return finish(inputs, means, is_rep, sizes)
