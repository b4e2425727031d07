"""Vocabulary shared by the models and the token reducers (both import it; it imports neither).

`WindowGrid` (w×w windows over a patch grid: the unit one LLM token and one reducer score stand for),
`PackPlan` (survivors of every frame packed into shared rows) and `AttentionPool` (one attention
query per window).
"""

from core.layers.packing import PackPlan, build_pack_plan, first_fit_decreasing
from core.layers.pooling import AttentionPool, masked_mean
from core.layers.windows import WindowGrid

__all__ = [
    "AttentionPool",
    "PackPlan",
    "WindowGrid",
    "build_pack_plan",
    "first_fit_decreasing",
    "masked_mean",
]
