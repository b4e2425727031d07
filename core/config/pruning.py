"""Pruning section: which token reducer runs, where, and at what budget."""

from __future__ import annotations

import math
from dataclasses import dataclass

from core.config._build import fail
from core.registry import REDUCERS


@dataclass
class PruningConfig:
    """`ratio` is the fraction of a video's visual tokens removed (STTS's `topk`).

    `prune_at` is the 0-based ViT block after which the reducer scores windows. STTS adds a key bias
    to block prune_at+1 and hard-prunes after it; the other in-ViT methods hard-prune right after
    block prune_at.
    """

    method: str = "none"
    ratio: float = 0.0
    prune_at: int = 1
    prune_from_frame: int = 0
    seed: int = 0
    # STTS scorer
    aux_coef: float = 0.5
    aux_stop_gradient: bool = False
    rescale_bias_min: float = math.exp(-2.0)
    scorer_hidden: int = 0  # 0 → the ViT's MLP width
    # easy / heuristic
    new_ref_threshold: float = 0.85
    threshold_step: float = 0.05
    max_retries: int = 5

    def __post_init__(self) -> None:
        if self.method not in REDUCERS:
            raise ValueError(REDUCERS.unknown_message(self.method, "pruning.method"))
        if not 0.0 <= self.ratio < 1.0:
            fail(
                "pruning.ratio",
                self.ratio,
                "must lie in [0, 1)",
                "give the fraction of visual tokens to remove, e.g. 0.5",
            )
        if self.prune_at < 0:
            fail("pruning.prune_at", self.prune_at, "must be ≥ 0", "use a ViT block index")
        if self.prune_from_frame < 0:
            fail("pruning.prune_from_frame", self.prune_from_frame, "must be ≥ 0", "use 0")
        if self.aux_coef < 0:
            fail("pruning.aux_coef", self.aux_coef, "must be ≥ 0", "use 0.5 (reference) or 0")
        if not 0.0 < self.rescale_bias_min <= 1.0:
            fail(
                "pruning.rescale_bias_min",
                self.rescale_bias_min,
                "must lie in (0, 1]",
                "use exp(-2) ≈ 0.1353",
            )
        if self.max_retries < 0:
            fail("pruning.max_retries", self.max_retries, "must be ≥ 0", "use 5")
