"""What the user set on the command line, and what that means for the grid.

Hydra has already applied the overrides to the composed config; the launcher still needs to know
WHICH keys were given explicitly, because an explicit value wins over the grid's `fixed` block, an
explicit experiment key that is also an axis collapses that axis to the given value (`arch=mot`
while the grid sweeps arch → only mot), and an explicit `grid.*` key wins over the grid's per-scale
block.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from core.config.experiment import SECTIONS
from core.results import AXES

# axis name → the experiment keys it sets (the first one is where its value is read back)
_KEYS = {
    "arch": ("fusion.arch",),
    "method": ("pruning.method",),
    "ratio": ("pruning.ratio",),
    "layer": ("pruning.prune_at",),
    "seed": ("train.seed", "pruning.seed"),
}
AXIS_KEYS: dict[str, tuple[str, ...]] = {axis: _KEYS[axis] for axis in AXES}
# config groups whose choice pins an axis
GROUP_AXES = {"arch": "arch"}


@dataclass
class CommandLine:
    """The explicit keys of one invocation, with values read back from the composed config."""

    sections: dict[str, Any] = field(default_factory=dict)  # "train.steps" → 50
    grid: dict[str, Any] = field(default_factory=dict)  # "axes.ratio" → [0.3, 0.5]
    groups: dict[str, str] = field(default_factory=dict)  # "arch" → "mot"
    group_values: dict[str, Any] = field(default_factory=dict)  # axis → value its group set

    def collapsed_axes(self) -> dict[str, Any]:
        """Axes the user pinned: {axis: value}."""
        out: dict[str, Any] = {}
        for group, axis in GROUP_AXES.items():
            if group in self.groups:
                out[axis] = self.group_values.get(axis, self.groups[group])
        for axis, keys in AXIS_KEYS.items():
            for key in keys:
                if key in self.sections:
                    out[axis] = self.sections[key]
                    break
        return out

    def section_values(self) -> dict[str, Any]:
        """Explicit experiment keys that are not axis keys (axis keys travel through the axes)."""
        axis_keys = {k for keys in AXIS_KEYS.values() for k in keys}
        return {k: v for k, v in self.sections.items() if k not in axis_keys}


def override_keys(overrides: Sequence[str]) -> list[tuple[str, bool, Any]]:
    """(key, is_delete, value) of each override string, parsed with Hydra's override grammar."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides=list(overrides))
    return [(o.key_or_group, o.is_delete(), None if o.is_delete() else o.value()) for o in parsed]


def read_command_line(cfg: Any, overrides: Sequence[str]) -> CommandLine:
    """Classify the override strings of one run and read their final values from `cfg`."""
    from omegaconf import OmegaConf

    out = CommandLine()
    for key, is_delete, value in override_keys(overrides):
        head = key.split(".", 1)[0]
        if key in ("grid", "scale", "arch", "backend"):
            if not is_delete:
                out.groups[key] = str(value)
            continue
        if head in SECTIONS and "." in key:
            if is_delete:
                raise ValueError(
                    f"~{key}: experiment keys cannot be deleted. Fix: set a value instead."
                )
            value = OmegaConf.select(cfg, key, throw_on_missing=True)
            out.sections[key] = plain(value)
        elif head == "grid" and "." in key and not is_delete:
            out.grid[key.split(".", 1)[1]] = plain(OmegaConf.select(cfg, key))
    for group, axis in GROUP_AXES.items():
        if group in out.groups:
            out.group_values[axis] = plain(OmegaConf.select(cfg, AXIS_KEYS[axis][0]))
    return out


def plain(value: Any) -> Any:
    """OmegaConf containers → plain Python (resolved)."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(value, DictConfig | ListConfig):
        return OmegaConf.to_container(value, resolve=True)
    return value
