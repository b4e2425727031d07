"""PyramidDrop (Xing et al., CVPR 2025, arXiv 2410.17247): staged drops, a pyramid over depth.

Follows the released code (`modeling_llama_pdrop.py`): the LLM is split into stages; at the end of
each stage but the last, the visual tokens are ranked by the head-averaged attention of the last
instruction token and the top fraction λ of the remaining ones is kept (so the counts shrink
geometrically, N·λ, N·λ², ...); the text is never dropped; after each drop the sequence is
renumbered 0..S′−1 (the released code resets `position_ids`). Default: 4 equal stages, as on
LLaVA-NeXT (drops before layers 8, 16, 24 of 32); training-free and usable in training as is (no
new parameters), so it runs both zero-shot and fine-tuned.

Changes: λ comes from the budget, λ = (1 − ratio)^(1/drops), so that after the last drop exactly
`core.budget.kept_tokens` visual tokens remain, the count every method keeps at that ratio (the
paper fixes λ = 0.5); the row is the attention of the stage's LAST layer, read beside its SDPA
call from the q and k it already computed (`AttentionProbe`), where the released code re-projects
the whole sequence with the NEXT layer's q/k projections (an extra K projection of every token);
the probing query is the last prompt token in training and evaluation alike (the released code
averages the tokens before each answer span in multi-turn training); batches of any size, padded
frames ranked last.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core.config._build import fail
from core.extensions import Display
from core.pruning.in_llm import InLLMReducer
from core.registry import REDUCERS


@dataclass
class PyramidDropConfig:
    """`pruning.pyramiddrop.*`: explicit drop `layers`, or `stages` equal stages."""

    layers: list[int] = field(default_factory=list)  # drop before these layers; [] → from stages
    stages: int = 4

    def check(self, path: str) -> None:
        if self.stages < 2:
            fail(f"{path}.stages", self.stages, "must be ≥ 2 (one drop per stage end)", "use 4")
        if self.layers and len(self.layers) < 2:
            fail(
                f"{path}.layers",
                self.layers,
                "a pyramid needs at least 2 drops",
                "give 2 or more layers, or use pruning.method=fastv for one drop",
            )


@REDUCERS.register("pyramiddrop")
class PyramidDrop(InLLMReducer):
    """Drop a fraction of the visual tokens at the end of every stage of the LLM."""

    Config = PyramidDropConfig
    display = Display(label="PyramidDrop", short="pdrop", order=210)
    keeps_positions = False
    layers_key = "layers"

    @classmethod
    def drop_layers(cls, options: Any, n_layers: int) -> list[int]:
        """`layers`, or the ends of `stages` equal stages (n·s // stages for s = 1..stages−1)."""
        if options.layers:
            return list(options.layers)
        ends = sorted({n_layers * s // options.stages for s in range(1, options.stages)})
        return [layer for layer in ends if layer >= 1]

    @classmethod
    def keep_counts(cls, options: Any, tokens: int, final: int, drops: int) -> list[int]:
        """round(N·λ^s), λ = (final/N)^(1/drops), the last exactly `final`."""
        lam = (final / tokens) ** (1.0 / drops)
        counts, current = [], tokens
        for s in range(1, drops):
            current = max(final, min(current, round(tokens * lam**s)))
            counts.append(current)
        return [*counts, final]

    @classmethod
    def check_experiment(cls, cfg) -> None:
        super().check_experiment(cfg)
        layers = cls.drop_layers(cfg.pruning.options, cfg.lm.n_layers)
        if len(layers) < 2:
            fail(
                "pruning.pyramiddrop.stages",
                cfg.pruning.options.stages,
                f"gives the drop layers {layers} with lm.n_layers={cfg.lm.n_layers}: a pyramid "
                "needs at least 2 drops",
                "raise lm.n_layers to 3 or more, or use pruning.method=fastv for one drop",
            )
