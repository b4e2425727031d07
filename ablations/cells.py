"""Cells: compose each axis combination into a validated, frozen experiment config with a stable id.

The base config is composed once by Hydra; each cell then applies plain dict overrides in this
order (later wins): its arch group file, the grid's `fixed`, the grid's `when` sets, its protocol
stage's keys, its axis values, the explicit command-line experiment keys, the protocol's links
(`train.init_cell`; zero steps for zero-shot cells) and the runtime keys (W&B group and tags,
absolute data root). `ExperimentConfig.from_dict` validates it and gives the id (`identity_hash`,
runtime keys excluded), so planning a thousand cells takes seconds.

With a grid protocol every axis combination becomes a fine-tune cell started from the base of its
arch × seed (one unpruned base cell each, composed once), plus a zero-shot cell for every
training-free method; without one, every cell trains from scratch (protocol `scratch`).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ablations.grid import GridError, GridSpec, Variant, flatten, get_dotted, set_dotted
from ablations.overrides import AXIS_KEYS
from core.config import ExperimentConfig
from core.registry import FUSION_ARCHS, REDUCERS
from core.results import AXES, cell_block, plan_entry


class CellError(ValueError):
    """A cell's config is invalid; the message names the grid, the cell and the field."""

    def __init__(self, message: str, detail: str = "", cell: str = "") -> None:
        super().__init__(message)
        self.detail = detail or message  # the config's own message, without the cell
        self.cell = cell


PROTOCOL_SUFFIX = {"scratch": "", "base": "-base", "finetune": "-ft", "zeroshot": "-zs"}


def cell_name(axes: Mapping[str, Any]) -> str:
    """Readable, unique within a grid: `jd-scorer-r0.5-l1-s0` (+ `-base`, `-ft`, `-zs`)."""
    arch = (
        FUSION_ARCHS.get(axes["arch"]).display.short
        if axes["arch"] in FUSION_ARCHS
        else axes["arch"]
    )
    suffix = PROTOCOL_SUFFIX[axes.get("protocol", "scratch")]
    if axes.get("variant"):
        suffix += f"-{axes['variant']}"
    return f"{arch}-{axes['method']}-r{axes['ratio']:g}-l{axes['layer']}-s{axes['seed']}{suffix}"


def training_free(method: str) -> bool:
    """A method with no learned parameters that is not the unpruned reference (zero-shot-able)."""
    reducer = REDUCERS.get(method)
    return not reducer.trained and not reducer.is_reference


@dataclass
class CellSpec:
    """One planned cell: its validated config, id, readable name, axes and applied overrides."""

    cell_id: str
    name: str
    grid: str
    axes: dict[str, Any]
    overrides: dict[str, Any]
    config: ExperimentConfig
    steps: int = 0
    base_id: str = ""  # the cell this one starts from (train.init_cell), "" when none

    @property
    def protocol(self) -> str:
        return str(self.axes.get("protocol", "scratch"))

    def frozen(self) -> dict[str, Any]:
        """What goes to config.yaml: the resolved sections plus the `cell` block."""
        out = self.config.to_dict()
        out["cell"] = cell_block(self.cell_id, self.grid, self.name, self.axes, self.overrides)
        return out

    def plan_entry(self) -> dict[str, Any]:
        return plan_entry(self.cell_id, self.name, self.axes)


@dataclass
class Composer:
    """Turns axis combinations of one grid into `CellSpec`s."""

    spec: GridSpec
    base: dict[str, Any]  # resolved experiment sections (after Hydra: scale, arch, command line)
    arch_config: Callable[[str], dict[str, Any]]  # arch group name → its (global) content
    cli_sections: dict[str, Any] = field(default_factory=dict)
    data_root_base: Path = field(default_factory=Path.cwd)

    def base_axes(self) -> dict[str, Any]:
        return {axis: get_dotted(self.base, AXIS_KEYS[axis][0]) for axis in AXES}

    def variant(self, axes: Mapping[str, Any]) -> Variant | None:
        name = axes.get("variant")
        return next((v for v in self.spec.variants if v.name == name), None) if name else None

    def protocol_sets(self, axes: Mapping[str, Any]) -> dict[str, Any]:
        """The keys of the cell's protocol stage (base or fine-tune; zero-shot uses fine-tune's; a
        scratch variant trains for the base's budget), then its variant's keys."""
        protocol, variant = self.spec.protocol, self.variant(axes)
        stage = axes.get("protocol", "scratch")
        out: dict[str, Any] = {}
        if protocol is not None:
            if stage == "base" or (stage == "scratch" and variant is not None and variant.scratch):
                out.update(protocol.base)
            elif stage in ("finetune", "zeroshot"):
                out.update(protocol.finetune)
        if variant is not None:
            out.update(variant.set)
        return out

    def sections_for(
        self, axes: Mapping[str, Any], base_id: str = ""
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """(sections, applied overrides) for one combination, not yet validated."""
        sections = copy.deepcopy(self.base)
        applied: dict[str, Any] = {}
        for key, value in flatten(self.arch_config(axes["arch"])).items():
            set_dotted(sections, key, copy.deepcopy(value))
        layers = [self.spec.fixed, self.spec.sets_for(axes), self.protocol_sets(axes)]
        layers.append({k: axes[a] for a, keys in AXIS_KEYS.items() for k in keys})
        layers.append(self.cli_sections)
        if base_id:
            layers.append({"train.init_cell": base_id})
        if axes.get("protocol") == "zeroshot":
            layers.append({"train.steps": 0, "train.caption_steps": 0})
        for layer in layers:
            for key, value in layer.items():
                set_dotted(sections, key, copy.deepcopy(value))
                applied[key] = value
        logging = sections.setdefault("logging", {})
        if not logging.get("group"):
            logging["group"] = self.spec.wandb_group
        if not logging.get("tags"):
            logging["tags"] = [self.spec.name, str(axes["arch"]), str(axes["method"])]
        data = sections.setdefault("data", {})
        root = data.get("data_root")
        if isinstance(root, str) and root and not os.path.isabs(root):
            data["data_root"] = str((self.data_root_base / root).resolve())
        return sections, applied

    def compose(self, axes: Mapping[str, Any], base_id: str = "") -> CellSpec | None:
        """A validated cell, or None when an `unless` exclude rule drops it."""
        name = cell_name(axes)
        sections, applied = self.sections_for(axes, base_id)
        if self.spec.drops(axes, sections) is not None:
            return None
        try:
            config = ExperimentConfig.from_dict(sections)
        except (ValueError, KeyError, TypeError) as exc:
            detail = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            raise CellError(
                f"grid {self.spec.name}, cell {name} (axes {dict(axes)}): {detail}",
                detail=str(detail),
                cell=name,
            ) from exc
        return CellSpec(
            cell_id=config.identity_hash(),
            name=name,
            grid=self.spec.name,
            axes=dict(axes),
            overrides=applied,
            config=config,
            steps=config.train.steps + config.train.caption_steps,
            base_id=base_id,
        )

    def compose_protocol(self, axes: Mapping[str, Any]) -> list[CellSpec]:
        """The cells of one axis combination: itself from scratch without a protocol; with one,
        its base, itself fine-tuned from that base and, for a training-free method, itself
        zero-shot on the base (bases repeat across combinations; compose_all keeps one)."""
        variants = ["", *(v.name for v in self.spec.variants if v.match.matches(axes))]
        if self.spec.protocol is None:
            cells = (self.compose({**axes, "protocol": "scratch", "variant": v}) for v in variants)
            return [c for c in cells if c is not None]
        base = self.compose(_base_axes_of(axes, self.base_axes()["layer"]))
        if base is None:
            return []
        out = [base]
        for name in variants:
            variant = self.variant({"variant": name})
            if variant is not None and variant.scratch:
                cell = self.compose({**axes, "protocol": "scratch", "variant": name})
                out += [] if cell is None else [cell]
                continue
            for protocol in ("finetune", "zeroshot"):
                if protocol == "zeroshot" and not (
                    self.spec.protocol.zeroshot and training_free(axes["method"])
                ):
                    continue
                cell = self.compose({**axes, "protocol": protocol, "variant": name}, base.cell_id)
                if cell is not None:
                    out.append(cell)
        return out

    def compose_all(self, max_errors: int = 8) -> list[CellSpec]:
        """Every cell of the grid; all invalid cells are reported together, before any work."""
        cells: list[CellSpec] = []
        errors: list[CellError] = []
        for axes in self.spec.combinations(self.base_axes()):
            try:
                cells.extend(self.compose_protocol(axes))
            except CellError as exc:
                errors.append(exc)
        if errors:
            raise CellError(invalid_cells_message(self.spec.name, errors, max_errors))
        cells = list({c.cell_id: c for c in cells if c.protocol == "base"}.values()) + [
            c for c in cells if c.protocol != "base"
        ]
        by_id: dict[str, CellSpec] = {}
        for cell in cells:
            other = by_id.setdefault(cell.cell_id, cell)
            if other is not cell:
                raise GridError(
                    f"grid {self.spec.name}: cells {other.name} and {cell.name} resolve to the same "
                    f"config (id {cell.cell_id}). Fix: remove the duplicate axis value or add an "
                    "exclude rule."
                )
        return cells


def invalid_cells_message(grid: str, errors: Sequence[CellError], max_errors: int = 8) -> str:
    """One line per distinct problem (a bad command-line key breaks every cell the same way: say
    it once, with the cells it breaks), at most `max_errors` problems."""
    by_detail: dict[str, list[str]] = {}
    for exc in errors:
        by_detail.setdefault(exc.detail, []).append(exc.cell)
    lines = []
    for detail, names in list(by_detail.items())[:max_errors]:
        named = [n for n in names if n]
        where = ", ".join(named[:3]) + (f" and {len(named) - 3} more" if len(named) > 3 else "")
        lines.append(f"{detail}\n    ({len(names)} cell(s){': ' + where if where else ''})")
    more = len(by_detail) - max_errors
    tail = f"\n  ... and {more} more problem(s)" if more > 0 else ""
    return f"{len(errors)} invalid cell(s) in grid {grid}:\n  " + "\n  ".join(lines) + tail


def _base_axes_of(axes: Mapping[str, Any], layer: Any) -> dict[str, Any]:
    base = {"method": "none", "ratio": 0.0, "layer": layer, "protocol": "base", "variant": ""}
    return {**axes, **base}


def flat_sections(frozen: Mapping[str, Any]) -> dict[str, Any]:
    """Dotted keys of the experiment sections of a frozen config (the `cell` block left out)."""
    return flatten({k: v for k, v in frozen.items() if k != "cell"})


def with_defaults(frozen: Mapping[str, Any]) -> dict[str, Any]:
    """A frozen config as the current code resolves it (keys added since at their defaults);
    as it is when it no longer validates."""
    sections = {k: v for k, v in frozen.items() if k != "cell"}
    try:
        return ExperimentConfig.from_dict(copy.deepcopy(sections)).to_dict()
    except (ValueError, KeyError, TypeError):
        return sections


def config_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, str]:
    """{key: `key: old → new`} for every experiment key that differs between two frozen configs
    (a key the old one lacks counts at its default)."""
    a, b = flat_sections(with_defaults(old)), flat_sections(new)
    return {
        k: f"{k}: {a.get(k, '<absent>')!r} → {b.get(k, '<absent>')!r}"
        for k in sorted(set(a) | set(b))
        if a.get(k) != b.get(k)
    }
