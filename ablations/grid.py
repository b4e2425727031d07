"""Grid files (plain data) → validated `GridSpec` → the list of axis combinations to run.

A grid file (`ablations/conf/grid/<name>.yaml`) has `name`, `axes` (arch, method, ratio, layer,
seed → lists), `fixed` (dotted experiment keys applied to every cell), `when` (keys set on the
cells matching an axis pattern), `exclude` rules, `resources`, `wandb_group` and optional
`scales.<scale>` blocks (axes/fixed/resources/... merged over the base when that scale is chosen).

Exclude rules: `{match: {axis: value | [values]}}` drops matching cells; with `unless:
{dotted.key: value}` it drops them only when the cell's config differs there; with `pin: {axis:
value | null}` it does not drop but sets those axes (null → the base config's value), so e.g. the
unpruned method gets one cell per arch × seed instead of one per ratio × layer.

An optional `protocol` block turns the grid into the field's protocol (ablations.cells composes it):
`base` (dotted keys for the unpruned base trained once per arch × seed), `finetune` (keys for every
cell of the axes, the unpruned control included, each started from its base), `zeroshot` (true:
also evaluate every training-free method on its base, with no training).

An optional `variants` block names config variants for an ablation: `{name: {match: {axis: values},
set: {dotted.key: value}, protocol: scratch (optional)}}`. Every cell matching a variant gets a copy
with the variant's keys set (its `variant` axis is the name; the grid's own cells have ""); with
`protocol: scratch` the copy trains from scratch for the base's budget instead of being fine-tuned.
"""

from __future__ import annotations

import copy
import itertools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ablations.overrides import AXIS_KEYS
from core.config.experiment import SECTIONS
from core.results import AXES

GRID_KEYS = (
    "name",
    "description",
    "axes",
    "fixed",
    "when",
    "exclude",
    "resources",
    "wandb_group",
    "scales",
    "protocol",
    "variants",
)
PROTOCOL_KEYS = ("base", "finetune", "zeroshot")
VARIANT_KEYS = ("match", "set", "protocol")
VARIANT_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
# grid.name and wandb_group reach paths, SLURM job names and sbatch scripts: no separators,
# whitespace, newlines or shell characters
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
RULE_KEYS = ("match", "pin", "unless", "set")
RESOURCE_KEYS = ("timeout_min", "cpus", "gpus", "mem_gb", "nodes", "tasks", "array_parallelism")
DEFAULT_RESOURCES: dict[str, Any] = {
    "timeout_min": 60,
    "cpus": 1,
    "gpus": 0,
    "mem_gb": 4,
    "nodes": 1,
    "tasks": None,
    "array_parallelism": 16,
}


class GridError(ValueError):
    """A grid file or grid override is invalid; the message names the grid, the field and the fix."""


def coerce_axis(axis: str, value: Any, where: str) -> Any:
    """Axis values are typed: arch/method str, ratio float, layer/seed int."""
    if axis in ("arch", "method"):
        if not isinstance(value, str) or not value:
            raise GridError(f"{where}={value!r}: expected a name. Fix: give a string.")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise GridError(f"{where}={value!r}: expected a number. Fix: give a number.")
    if axis == "ratio":
        return float(value)
    if isinstance(value, float) and not value.is_integer():
        raise GridError(f"{where}={value!r}: expected a whole number. Fix: give an integer.")
    return int(value)


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"train": {"steps": 5}} → {"train.steps": 5} at any depth; dotted keys pass through; lists
    are values; an empty mapping sets nothing (overrides merge, they never clear a section)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{full}."))
        else:
            out[full] = value
    return out


def deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    node = data
    *parents, leaf = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def get_dotted(data: Mapping[str, Any], dotted: str, default: Any = None) -> Any:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def reject_unknown(
    keys: Iterable[str], allowed: Iterable[str], where: str, noun: str = "key"
) -> None:
    """Refuse the first (sorted) of `keys` not in `allowed`, naming it at `where.<key>`."""
    unknown = sorted(set(keys) - set(allowed))
    if unknown:
        raise GridError(f"{where}.{unknown[0]}: unknown {noun}. Fix: use {allowed}.")


def check_experiment_keys(keys: Iterable[str], where: str) -> None:
    for key in keys:
        head = key.split(".", 1)[0]
        if head not in SECTIONS or "." not in key:
            raise GridError(
                f"{where}.{key}: not an experiment key. Fix: use section.key with a section in "
                f"{', '.join(SECTIONS)} (e.g. train.steps)."
            )


@dataclass(frozen=True)
class Rule:
    """One `when`/`exclude` entry: a pattern over axes plus what to do with matching cells."""

    match: dict[str, tuple[Any, ...]]
    pin: dict[str, Any] | None = None
    unless: dict[str, Any] | None = None
    set: dict[str, Any] | None = None

    def matches(self, axes: Mapping[str, Any]) -> bool:
        return all(axes.get(axis) in values for axis, values in self.match.items())

    @classmethod
    def parse(cls, data: Any, where: str, kind: str) -> Rule:
        if not isinstance(data, Mapping):
            raise GridError(
                f"{where}={data!r}: expected a mapping with 'match'. Fix: see "
                "ablations/grid.py for the rule format."
            )
        reject_unknown(data, RULE_KEYS, where, "rule key")
        match_raw = data.get("match") or {}
        if not isinstance(match_raw, Mapping) or not match_raw:
            raise GridError(f"{where}.match: needs at least one axis. Fix: e.g. {{method: none}}.")
        match: dict[str, tuple[Any, ...]] = {}
        for axis, values in match_raw.items():
            if axis not in AXES:
                raise GridError(f"{where}.match.{axis}: unknown axis. Fix: use one of {AXES}.")
            values = values if isinstance(values, list | tuple) else [values]
            match[axis] = tuple(coerce_axis(axis, v, f"{where}.match.{axis}") for v in values)
        pin = data.get("pin")
        if pin is not None:
            for axis, value in pin.items():
                if axis not in AXES:
                    raise GridError(f"{where}.pin.{axis}: unknown axis. Fix: use one of {AXES}.")
                if value is not None:
                    coerce_axis(axis, value, f"{where}.pin.{axis}")
            pin = {a: None if v is None else coerce_axis(a, v, where) for a, v in pin.items()}
        unless = data.get("unless")
        if unless is not None:
            unless = flatten(unless)
            check_experiment_keys(unless, f"{where}.unless")
        sets = data.get("set")
        if sets is not None:
            sets = flatten(sets)
            check_experiment_keys(sets, f"{where}.set")
        if kind == "when" and (sets is None or pin is not None or unless is not None):
            raise GridError(f"{where}: a 'when' rule has 'match' and 'set' only.")
        if kind == "exclude" and sets is not None:
            raise GridError(
                f"{where}.set: exclude rules pin or drop cells; use 'when' to set keys."
            )
        if pin is not None and unless is not None:
            raise GridError(f"{where}: give either 'pin' or 'unless', not both.")
        return cls(match=match, pin=pin, unless=unless, set=sets)


@dataclass(frozen=True)
class Protocol:
    """Base stage, then fine-tune (and zero-shot) stage: see the module docstring."""

    base: dict[str, Any]
    finetune: dict[str, Any]
    zeroshot: bool = True

    @classmethod
    def parse(cls, data: Any, where: str) -> Protocol | None:
        if data is None:
            return None
        if not isinstance(data, Mapping):
            raise GridError(
                f"{where}={data!r}: expected a mapping with base, finetune (and zeroshot). Fix: "
                "see ablations/conf/grid/prune_sweep.yaml."
            )
        reject_unknown(data, PROTOCOL_KEYS, where)
        stages = {}
        for stage in ("base", "finetune"):
            values = flatten(data.get(stage) or {})
            check_experiment_keys(values, f"{where}.{stage}")
            stages[stage] = values
        zeroshot = data.get("zeroshot", True)
        if not isinstance(zeroshot, bool):
            raise GridError(f"{where}.zeroshot={zeroshot!r}: expected true or false.")
        return cls(base=stages["base"], finetune=stages["finetune"], zeroshot=zeroshot)


@dataclass(frozen=True)
class Variant:
    """A named config variant of the cells it matches (see the module docstring)."""

    name: str
    match: Rule
    set: dict[str, Any]
    scratch: bool = False

    @classmethod
    def parse(cls, name: Any, data: Any, where: str) -> Variant:
        where = f"{where}.{name}"
        if not isinstance(name, str) or not VARIANT_NAME.fullmatch(name):
            raise GridError(
                f"{where}: a variant name is lower-case letters, digits and _, starting with a "
                "letter (it becomes part of cell names). Fix: e.g. reference_aux."
            )
        if not isinstance(data, Mapping):
            raise GridError(f"{where}={data!r}: expected a mapping with match and set.")
        reject_unknown(data, VARIANT_KEYS, where)
        match = Rule.parse({"match": data.get("match") or {}}, where, "exclude")
        sets = flatten(data.get("set") or {})
        check_experiment_keys(sets, f"{where}.set")
        protocol = data.get("protocol")
        if protocol not in (None, "scratch"):
            raise GridError(
                f"{where}.protocol={protocol!r}: a variant can only train from scratch. Fix: "
                "use protocol: scratch, or leave it out (fine-tuned like the grid's cells)."
            )
        if not sets and protocol is None:
            raise GridError(f"{where}: changes nothing. Fix: give set keys or protocol: scratch.")
        return cls(name=name, match=match, set=sets, scratch=protocol == "scratch")


@dataclass
class GridSpec:
    name: str
    axes: dict[str, list[Any]]
    fixed: dict[str, Any] = field(default_factory=dict)
    when: list[Rule] = field(default_factory=list)
    exclude: list[Rule] = field(default_factory=list)
    resources: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_RESOURCES))
    wandb_group: str = ""
    description: str = ""
    protocol: Protocol | None = None
    variants: list[Variant] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GridSpec:
        """Validate a merged grid mapping (after `resolve_grid`)."""
        name = data.get("name")
        if not isinstance(name, str) or not SAFE_NAME.fullmatch(name):
            raise GridError(
                f"grid.name={name!r}: needs a plain folder name (letters, digits, '.', '_', '-', "
                "starting with a letter or digit, at most 100; it becomes a folder and a SLURM "
                "job name). Fix: e.g. prune_sweep."
            )
        where = f"grid {name}"
        group = data.get("wandb_group")
        if group is not None and not (isinstance(group, str) and SAFE_NAME.fullmatch(group)):
            raise GridError(
                f"{where}: grid.wandb_group={group!r}: needs a plain name (letters, digits, '.', "
                "'_', '-'). Fix: e.g. wandb_group: prune_sweep."
            )
        reject_unknown(data, GRID_KEYS, f"{where}: grid")
        axes_raw = data.get("axes") or {}
        reject_unknown(axes_raw, AXES, f"{where}: grid.axes", "axis")
        axes: dict[str, list[Any]] = {}
        for axis in AXES:
            values = axes_raw.get(axis)
            if values is None:
                raise GridError(
                    f"{where}: grid.axes.{axis} is missing. Fix: give a list, "
                    f"e.g. {axis}: [{'0' if axis in ('layer', 'seed') else '...'}]."
                )
            values = values if isinstance(values, list | tuple) else [values]
            if not values:
                raise GridError(
                    f"{where}: grid.axes.{axis} is empty. Fix: give at least one value."
                )
            typed = [
                coerce_axis(axis, v, f"{where}: grid.axes.{axis}[{i}]")
                for i, v in enumerate(values)
            ]
            axes[axis] = list(dict.fromkeys(typed))
        fixed = flatten(data.get("fixed") or {})
        check_experiment_keys(fixed, f"{where}: grid.fixed")
        when = [
            Rule.parse(r, f"{where}: grid.when[{i}]", "when")
            for i, r in enumerate(data.get("when") or [])
        ]
        exclude = [
            Rule.parse(r, f"{where}: grid.exclude[{i}]", "exclude")
            for i, r in enumerate(data.get("exclude") or [])
        ]
        res_raw = data.get("resources") or {}
        reject_unknown(res_raw, RESOURCE_KEYS, f"{where}: grid.resources")
        resources = {**DEFAULT_RESOURCES, **res_raw}
        for key in ("timeout_min", "cpus", "nodes", "array_parallelism"):
            if not isinstance(resources[key], int | float) or resources[key] < 1:
                raise GridError(f"{where}: grid.resources.{key}={resources[key]!r}: must be ≥ 1.")
        if resources["gpus"] < 0 or resources["mem_gb"] <= 0:
            raise GridError(f"{where}: grid.resources gpus must be ≥ 0 and mem_gb > 0.")
        return cls(
            name=name,
            axes=axes,
            fixed=fixed,
            when=when,
            exclude=exclude,
            resources=resources,
            wandb_group=str(data.get("wandb_group") or name),
            description=str(data.get("description") or ""),
            protocol=Protocol.parse(data.get("protocol"), f"{where}: grid.protocol"),
            variants=_variants(data.get("variants"), f"{where}: grid.variants"),
        )

    def combinations(self, base_axes: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Axis product with pins applied and duplicates removed, in a stable order.

        `base_axes` gives the base config's value of each axis (used by `pin: {axis: null}`).
        Rules with `unless` need the cell's config and are applied by `drops`.
        """
        seen: dict[tuple[Any, ...], dict[str, Any]] = {}
        for combo in itertools.product(*(self.axes[a] for a in AXES)):
            axes = dict(zip(AXES, combo, strict=True))
            dropped = False
            for rule in self.exclude:
                if not rule.matches(axes):
                    continue
                if rule.pin is not None:
                    for axis, value in rule.pin.items():
                        axes[axis] = base_axes[axis] if value is None else value
                elif rule.unless is None:
                    dropped = True
                    break
            if not dropped:
                seen.setdefault(tuple(axes[a] for a in AXES), axes)
        return list(seen.values())

    def drops(self, axes: Mapping[str, Any], sections: Mapping[str, Any]) -> str | None:
        """The reason a composed cell is excluded by an `unless` rule, or None."""
        for rule in self.exclude:
            if rule.unless is None or not rule.matches(axes):
                continue
            for key, want in rule.unless.items():
                have = get_dotted(sections, key)
                if have != want:
                    return f"{key}={have!r} (needs {want!r})"
        return None

    def sets_for(self, axes: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for rule in self.when:
            if rule.matches(axes) and rule.set:
                out.update(rule.set)
        return out


def _variants(data: Any, where: str) -> list[Variant]:
    if data is None:
        return []
    if not isinstance(data, Mapping):
        raise GridError(f"{where}={data!r}: expected a mapping of variant names to variants.")
    return [Variant.parse(name, value, where) for name, value in data.items()]


def resolve_grid(
    grid: Mapping[str, Any] | None,
    scale: str,
    cli_grid: Mapping[str, Any] | None = None,
    collapsed: Mapping[str, Any] | None = None,
    available: Iterable[str] = (),
) -> GridSpec:
    """Merge the grid's `scales.<scale>` block, then explicit `grid.*` command-line keys, then
    collapse axes the user pinned through experiment keys; validate."""
    if grid is None:
        raise GridError(
            "no grid selected. Fix: add grid=<name> with one of: " + ", ".join(available) + "."
        )
    base = {k: v for k, v in grid.items() if k != "scales"}
    scales = grid.get("scales") or {}
    if not isinstance(scales, Mapping):
        raise GridError(f"grid {grid.get('name')}: grid.scales must map scale names to blocks.")
    merged = deep_merge(base, scales.get(scale) or {})
    for key, value in (cli_grid or {}).items():
        if key.startswith("scales."):
            continue
        set_dotted(merged, key, value)
    spec = GridSpec.from_dict(merged)
    for axis, value in (collapsed or {}).items():
        spec.axes[axis] = [coerce_axis(axis, value, f"{AXIS_KEYS[axis][0]} (command line)")]
    return spec
