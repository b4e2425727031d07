"""Build section dataclasses from plain dicts with precise unknown-key and type errors."""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any


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


def build(cls: type, data: Any, path: str) -> Any:
    """Instantiate dataclass `cls` from mapping `data`; unknown keys and wrong types raise ConfigError."""
    if isinstance(data, cls):
        return data
    if data is None:
        data = {}
    if not isinstance(data, dict):
        fail(path, data, f"expected a mapping for section {path!r}", "give key: value pairs")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1)
            hint = f"did you mean {path}.{close[0]}? " if close else ""
            raise ConfigError(
                f"{path}.{key}: unknown key. Fix: {hint}valid keys are {', '.join(sorted(fields))}."
            )
        kwargs[key] = _check_type(f"{path}.{key}", value, hints[key])
    return cls(**kwargs)


def to_dict(obj: Any) -> dict[str, Any]:
    """Dataclass → plain nested dict (lists stay lists)."""
    return dataclasses.asdict(obj)
