"""`oracle`: an upper bound that reads the synthetic benchmark's ground-truth object masks.

Windows that hold an object are protected; the rest are pruned like `easy` (most similar to the same
window of the previous frame first, on the ViT input embeddings). It needs `data.ground_truth`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch.nn.functional as F

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


@REDUCERS.register("oracle")
class OracleReduction(TokenReducer):
    """Upper bound on the synthetic benchmark: keep windows that hold objects, fill by `easy`."""

    display = Display(label="oracle", short="oracle", order=50)
    needs_divisible_grid = True
    needs_ground_truth = True

    @classmethod
    def flops(cls, cfg: ExperimentConfig, flow: TokenFlow) -> int:
        """The `easy` cosine pass (max-pooling the object mask is not a matrix product)."""
        return neighbour_cosine_flops(cfg, flow)

    def select(self, inputs: ReductionInputs) -> Selection:
        if inputs.object_mask is None:
            raise ValueError(
                "pruning.method=oracle needs ground-truth object masks in the batch "
                "(object_mask). Fix: set data.ground_truth=true on a dataset that ships them."
            )
        win = inputs.windows
        b, f, s, _ = inputs.object_mask.shape
        cell = s // win.grid * win.window  # pixels per window side
        held = F.max_pool2d(
            inputs.object_mask.flatten(0, 1)[:, None].float(), cell, cell, ceil_mode=True
        ).view(b, f, win.num_windows)
        sim = neighbour_cosine(window_vectors(inputs.embeddings, win))
        sim[:, 0] = -1.0
        priority = redundancy_priority(sim, held, inputs.frame_mask)
        return Selection(
            keep=prune_lowest(priority, inputs.n_prune, tie_keys(inputs, self.cfg.seed)),
            scores=held,
        )
