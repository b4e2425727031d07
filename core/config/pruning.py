"""Pruning section: which token reducer runs, where, and at what budget.

The reducer's own settings live in its sub-section (`pruning.scorer.aux_coef`,
`pruning.easy.new_ref_threshold`), declared by the reducer class (`Config`) in core/pruning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.config._build import extension_options, fail, resolve_options
from core.registry import REDUCERS


@dataclass
class PruningConfig:
    """`ratio` is the fraction of a video's visual tokens removed (STTS's `topk`).

    `prune_at` is the 0-based ViT block after which the reducer scores windows; an in-ViT reducer
    hard-prunes `hard_prune_delay` blocks later (STTS: 1, after its key-bias block; others: 0).
    `options` holds the selected method's own settings (written as `pruning.<method>.*`).
    """

    method: str = "none"
    ratio: float = 0.0
    prune_at: int = 0
    prune_from_frame: int = 0
    seed: int = 0
    options: Any = extension_options(REDUCERS, "method")

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
        resolve_options(self, "pruning")
