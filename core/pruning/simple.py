"""The reference and the floor: `none` (the unpruned model) and `random` (uniform window drop)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from core.extensions import Display, TokenFlow
from core.pruning.base import (
    ReductionInputs,
    Selection,
    TokenReducer,
    clip_generator,
    padding_priority,
    prune_lowest,
)
from core.registry import REDUCERS

if TYPE_CHECKING:
    from core.config.experiment import ExperimentConfig


@REDUCERS.register("none")
class NoReduction(TokenReducer):
    """Keeps everything (the unpruned model every method is compared against)."""

    display = Display(label="unpruned", short="none", order=0)
    is_reference = True

    @classmethod
    def flops(cls, cfg: ExperimentConfig, flow: TokenFlow) -> int:
        """Scores nothing: 0."""
        return 0

    def select(self, inputs: ReductionInputs) -> Selection:
        b, f = inputs.frame_mask.shape
        keep = torch.ones(
            b, f, inputs.windows.num_windows, dtype=torch.bool, device=inputs.frame_mask.device
        )
        return Selection(keep=keep)


@REDUCERS.register("random")
class RandomReduction(TokenReducer):
    """Uniform over the valid windows of each clip; the first frame is not protected.

    The draw for a clip depends only on (pruning.seed, the clip's key, the training step; step −1 at
    eval), so it is reproducible, resumable and independent of the rest of the batch.
    """

    display = Display(label="random", short="rand", order=10)

    @classmethod
    def flops(cls, cfg: ExperimentConfig, flow: TokenFlow) -> int:
        """Random draws, no matrix products: 0."""
        return 0

    def select(self, inputs: ReductionInputs) -> Selection:
        b, f = inputs.frame_mask.shape
        w = inputs.windows.num_windows
        keys = inputs.sample_keys.tolist() if inputs.sample_keys is not None else list(range(b))
        step = inputs.step if inputs.training else -1
        draws = [
            torch.rand(f, w, generator=clip_generator(self.cfg.seed, int(key), step))
            for key in keys
        ]
        priority = torch.stack(draws).to(inputs.frame_mask.device)
        priority = priority + padding_priority(inputs.frame_mask, w)
        return Selection(keep=prune_lowest(priority, inputs.n_prune), scores=priority)
