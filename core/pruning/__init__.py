"""Token reducers behind one interface (registry REDUCERS), one module per method."""

from core.pruning import (  # noqa: F401  (registers the methods)
    divprune,
    dycoke,
    fastv,
    fastvid,
    fewer_frames,
    framefusion,
    oracle,
    pool,
    pyramiddrop,
    scorer,
    similarity,
    simple,
    tome,
    vidcom2,
    visionzip,
)
from core.pruning.base import ReductionInputs, Selection, Stage, TokenReducer
from core.registry import REDUCERS


def build_reducer(cfg, vit_dim: int = 0, vit_mlp_dim: int = 0) -> TokenReducer:
    """Instantiate the configured reducer (`cfg` is a PruningConfig)."""
    return REDUCERS.get(cfg.method)(cfg, vit_dim, vit_mlp_dim)


__all__ = ["REDUCERS", "ReductionInputs", "Selection", "Stage", "TokenReducer", "build_reducer"]
