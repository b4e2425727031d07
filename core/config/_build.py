"""Build section dataclasses from plain dicts with precise unknown-key and type errors.

A section whose key selects a registered extension (`pruning.method`, `fusion.arch`, ...) declares
an `extension_options(registry, key)` field. The selected extension's own settings then live under
its name (`pruning.scorer.aux_coef`): they are built with that extension's `Config`, checked with its
`check(path)` and stored in the field; sub-sections of other extensions are validated and dropped.
`to_dict` writes the field back under the extension's name (omitted when it has no settings).
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from core.registry import Registry

EXTENSION = "extension"  # dataclass-field metadata key of an extension_options field


class ConfigError(ValueError):
    """A config value is invalid; the message names the field, the value and the fix."""


def fail(field: str, value: Any, problem: str, fix: str) -> None:
    raise ConfigError(f"{field}={value!r}: {problem}. Fix: {fix}.")


def _check_type(path: str, value: Any, annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check_type(path, value, arg)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{path}: bad value {value!r}")
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            fail(path, value, f"expected a list, got {type(value).__name__}", "give a list")
        (inner, *_) = typing.get_args(annotation) or (Any,)
        return [_check_type(f"{path}[{i}]", v, inner) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            fail(path, value, f"expected a mapping, got {type(value).__name__}", "give a mapping")
        return dict(value)
    if annotation is Any:
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            fail(path, value, "expected true/false", "write true or false")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            fail(path, value, "expected an integer", "give a whole number")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            fail(path, value, "expected a number", "give a number")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            fail(path, value, "expected a string", "quote the value")
        return value
    if dataclasses.is_dataclass(annotation):
        return build(annotation, value, path)
    return value


class Selection(NamedTuple):
    """An extension_options field: `field` holds the options of extension `registry[<key>]`."""

    field: str
    registry: Registry
    key: str


def extension_options(registry: Registry, key: str) -> Any:
    """A section field holding the own settings of the extension named by the section's `key`."""
    return dataclasses.field(default=None, metadata={EXTENSION: (registry, key)})


def _selection(cls: type) -> Selection | None:
    for f in dataclasses.fields(cls):
        if EXTENSION in f.metadata:
            return Selection(f.name, *f.metadata[EXTENSION])
    return None


def check_options(options: Any, path: str) -> None:
    """Run an extension Config's own `check(path)` (messages name `path.<field>`)."""
    check = getattr(options, "check", None)
    if check is not None:
        check(path)


def resolve_options(section: Any, path: str) -> None:
    """Fill (default settings) and check the selected extension's options; sections call this from
    `__post_init__` after validating their key."""
    sel = _selection(type(section))
    if sel is None:
        return
    name = getattr(section, sel.key)
    config = sel.registry.get(name).Config
    options = getattr(section, sel.field)
    if options is None:
        options = config()
        setattr(section, sel.field, options)
    elif not isinstance(options, config):
        fail(f"{path}.{name}", options, f"is not a {config.__qualname__}", "pass its own config")
    check_options(options, f"{path}.{name}")


def _unknown_key(path: str, key: str, keys: list[str], sel: Selection | None, chosen: Any) -> str:
    hint = ""
    if sel is not None:  # an extension's setting given flat (`aux_coef`, `moma_capacity`)
        owners = {
            n: field
            for n in sel.registry.names()
            for field in _init_fields(sel.registry.get(n).Config)
            if key in (field, f"{n}_{field}")
        }
        if owners:
            owner = chosen if chosen in owners else next(iter(owners))
            hint = f"did you mean {path}.{owner}.{owners[owner]}? "
    if not hint:
        names = keys + (sel.registry.names() if sel is not None else [])
        close = difflib.get_close_matches(key, names, n=1)
        hint = f"did you mean {path}.{close[0]}? " if close else ""
    if not keys and sel is None:
        return f"{path}.{key}: unknown key. Fix: remove it ({path} takes no settings)."
    subs = f"; sub-sections {', '.join(sel.registry.names())}" if sel is not None else ""
    return f"{path}.{key}: unknown key. Fix: {hint}valid keys are {', '.join(sorted(keys))}{subs}."


def _init_fields(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls) if f.init}


def build(cls: type, data: Any, path: str) -> Any:
    """Instantiate dataclass `cls` from mapping `data`; unknown keys and wrong types raise ConfigError."""
    if isinstance(data, cls):
        return data
    if data is None:
        data = {}
    if not isinstance(data, dict):
        fail(path, data, f"expected a mapping for section {path!r}", "give key: value pairs")
    hints = typing.get_type_hints(cls)
    sel = _selection(cls)
    fields = _init_fields(cls)
    keys = [k for k in fields if sel is None or k != sel.field]
    chosen = data.get(sel.key, fields[sel.key].default) if sel is not None else None
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if sel is not None and key in sel.registry:
            options = build(sel.registry.get(key).Config, value, f"{path}.{key}")
            check_options(options, f"{path}.{key}")
            if key == chosen:  # other extensions' sub-sections are validated, then dropped
                kwargs[sel.field] = options
        elif key in keys:
            kwargs[key] = _check_type(f"{path}.{key}", value, hints[key])
        else:
            raise ConfigError(_unknown_key(path, key, keys, sel, chosen))
    return cls(**kwargs)


def to_dict(obj: Any) -> dict[str, Any]:
    """Dataclass → plain nested dict (lists stay lists); extension options under their name."""
    out = dataclasses.asdict(obj)
    sel = _selection(type(obj))
    if sel is not None:
        options = out.pop(sel.field)
        if options:
            out[getattr(obj, sel.key)] = options
    return out


def defaults(cls: type) -> dict[str, Any]:
    """A section's default values as a plain dict, with every registered extension's sub-section
    (no validation), so any `section.<extension>.<key>` can be overridden before a key is chosen."""
    sel = _selection(cls)
    out: dict[str, Any] = {}
    for f in _init_fields(cls).values():
        if sel is not None and f.name == sel.field:
            continue
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    if sel is not None:
        for name in sel.registry.names():
            out[name] = defaults(sel.registry.get(name).Config)
    return out


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dict → dotted keys at any depth; empty mappings contribute nothing."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
