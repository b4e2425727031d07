"""FastV (Chen et al., ECCV 2024, arXiv 2403.06764): one drop inside the LLM, after layer K−1.

Follows the released code (`fastv_kvcache.py`, in-place variant): layers 0..K−1 run on every
visual token; layer K−1's attention row of the probing query, averaged over heads and read on the
visual columns, ranks them; the top ones survive into layers K.. with their ORIGINAL position ids
(RoPE positions keep the gaps); the text is never dropped. Default K = 2 as in the paper.

Changes: the budget is the kept count (`pruning.ratio` is FastV's R, the fraction removed, and the
kept count is `core.budget.kept_tokens`, as for every method); the row is computed beside the SDPA
call from the layer's own q and k (`AttentionProbe`), not by switching the layer to eager attention;
the probing query is the last PROMPT token (the released code takes the last token of the prefill,
the same token at inference; with teacher forcing the last sequence token would be an answer
token); batches of any size, padded frames ranked last; the paper's variant that averages the
attention over all queries is not offered (it needs the full attention matrix).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.config._build import fail
from core.extensions import Display
from core.pruning.in_llm import InLLMReducer
from core.registry import REDUCERS


@dataclass
class FastVConfig:
    """`pruning.fastv.*`."""

    layer: int = 2  # K: layers 0..K−1 see every visual token, layers K.. only the kept ones

    def check(self, path: str) -> None:
        if self.layer < 1:
            fail(
                f"{path}.layer",
                self.layer,
                "must be ≥ 1 (layer K−1's attention ranks the tokens)",
                "use the paper's 2",
            )


@REDUCERS.register("fastv")
class FastV(InLLMReducer):
    """Keep the visual tokens the last prompt token attends to most in layer K−1."""

    Config = FastVConfig
    display = Display(label="FastV", short="fastv", order=200)

    @classmethod
    def drop_layers(cls, options: Any, n_layers: int) -> list[int]:
        return [options.layer]

    @classmethod
    def keep_counts(cls, options: Any, tokens: int, final: int, drops: int) -> list[int]:
        return [final]
