"""What every extension (reducer, fusion arch, connector, vision encoder) declares about itself.

An extension is one registered class that carries, in its own module:
- `Config`: a dataclass of its own settings, selected by its key (`pruning.scorer.aux_coef`,
  `fusion.moma.capacity`); `check(path)` on it validates them. `NoOptions` when it has none.
- `flops(cfg, flow)`: its analytic forward cost for one clip, given the `TokenFlow`.
- capability flags read by the config checks, and (reducers, archs) a `Display` for tables/figures.

The registries refuse a class that lacks its spec (core.registry `requires`), so a new method can
never cost a silent 0. `display_metadata(cfg)` is what a cell writes into result.json.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from core.registry import FUSION_ARCHS, REDUCERS

if TYPE_CHECKING:
    from core.config.experiment import ExperimentConfig


@dataclass
class NoOptions:
    """The settings of an extension that has none of its own."""


@dataclass(frozen=True)
class Display:
    """How tables and figures name and sort an extension (no name tables elsewhere)."""

    label: str  # human-readable, e.g. "STTS"
    short: str  # compact, e.g. for cell names and markers
    order: int  # sort key in tables and legends (ascending)


@dataclass(frozen=True)
class TokenFlow:
    """How many tokens each stage of one clip's forward sees (batch 1, no padding).

    Built by the reducer (`TokenReducer.token_flow`), so a reducer acting at another stage changes
    the counts without touching the FLOPs sum: `vit_blocks[i]` lists the tokens of each frame in
    encoder block i, the connector pools `connector_tokens` windows, and LLM layer l carries
    `llm_visual[l]` visual tokens next to `text_len` text tokens; the LM head projects the text
    positions onto `vocab` logits.
    """

    frames: int
    text_len: int
    vocab: int
    patches: int  # N = grid² per frame, before any reduction
    windows: int  # P′ windows per frame, before any reduction
    vit_blocks: list[list[int]] = field(default_factory=list)
    connector_tokens: int = 0
    llm_visual: list[int] = field(default_factory=list)
    reduced: bool = False  # some token is removed, so the reducer runs

    @property
    def full_tokens(self) -> int:
        return self.frames * self.windows

    @property
    def llm_kept_fraction(self) -> float:
        """Visual tokens per LLM layer, averaged over the layers, over the unreduced count (the
        kept fraction at the LLM input for methods that do not drop inside the LLM)."""
        layers = self.llm_visual or [self.connector_tokens]
        return sum(layers) / len(layers) / self.full_tokens


@dataclass(frozen=True)
class EncoderCost:
    """A vision encoder's FLOPs: the patch embedding and each block."""

    patch_embed: int
    blocks: list[int]


class Extension:
    """Defaults shared by every extension class: no own settings, no cross-section checks."""

    Config: ClassVar[type] = NoOptions

    @classmethod
    def check_experiment(cls, cfg: ExperimentConfig) -> None:
        """Checks that span sections (e.g. a width that must divide another section's width)."""


def display_metadata(cfg: ExperimentConfig) -> dict[str, dict[str, Any]]:
    """The method's and the arch's display metadata, as written into result.json["display"]."""
    return describe(cfg.pruning.method, cfg.fusion.arch)


def reference_method() -> str:
    """The registered reducer that is the unpruned reference (`is_reference`)."""
    names = [n for n in REDUCERS.names() if REDUCERS.get(n).is_reference]
    if len(names) != 1:
        raise RuntimeError(f"exactly one reducer must be the reference, found {names}")
    return names[0]


def describe(method: str, arch: str) -> dict[str, dict[str, Any]]:
    """`display_metadata` for a method key and an arch key."""
    reducer = REDUCERS.get(method)
    fusion = FUSION_ARCHS.get(arch)
    return {
        "method": {
            "key": method,
            **asdict(reducer.display),
            "is_reference": bool(reducer.is_reference),
            "uses_ground_truth": bool(reducer.needs_ground_truth),
            "stage": str(reducer.stage),
            "trained": bool(reducer.trained),
        },
        "arch": {"key": arch, **asdict(fusion.display)},
    }
