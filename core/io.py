"""Crash-safe file writes for the results tree.

Every file a reader may look at while a cell runs (status.json, result.json, config.yaml, plan.json)
is written to a temp file in the same directory, flushed, fsynced and renamed over the target, then
the directory is fsynced: readers see the old or the new file, never a torn one. JSONL metrics are
appended line by line and fsynced, so a killed job loses at most the line being written.

Files are created with mode 0666 filtered by the process umask (and any default ACL of the
folder), like any other file the user writes: results on shared storage stay readable by the group
under the usual umask 0022 or 0002 (tempfile.mkstemp would make every one of them 0600).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Persist a rename in `path` (a no-op where directories cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(os.fspath(path), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(
    path: str | os.PathLike[str], write: Callable[[IO[Any]], None], binary: bool = False
) -> Path:
    """Call `write(f)` on a temp file next to `path`, then atomically replace `path` with it."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = create_exclusive(target.parent, f".{target.name}.", ".tmp")
    try:
        mode = "wb" if binary else "w"
        kwargs: dict[str, Any] = {} if binary else {"encoding": "utf-8"}
        with os.fdopen(fd, mode, **kwargs) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(target.parent)
    return target


def create_exclusive(directory: Path, prefix: str, suffix: str) -> tuple[int, Path]:
    """(fd, path) of a new file `<prefix><random><suffix>` in `directory`, opened for writing and
    created with O_EXCL and mode 0666 & ~umask (the umask and default ACLs apply)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        path = directory / f"{prefix}{secrets.token_hex(6)}{suffix}"
        try:
            return os.open(path, flags, 0o666), path
        except FileExistsError:
            continue
    raise FileExistsError(f"{directory}: no free temp file name {prefix}*{suffix} in 100 tries")


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text))


def to_jsonable(obj: Any) -> Any:
    """Plain JSON types: numpy/torch scalars → numbers, arrays → lists, paths → str, tuples → lists,
    and non-finite floats → None (JSON has no NaN; a NaN loss shows up as null, not a crash)."""
    if isinstance(obj, bool) or obj is None or isinstance(obj, str | int):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "tolist") and callable(obj.tolist):  # numpy / torch scalars and arrays
        return to_jsonable(obj.tolist())
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serialisable: {obj!r}")


def dumps_json(obj: Any, indent: int | None = None) -> str:
    return json.dumps(to_jsonable(obj), indent=indent, allow_nan=False)


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> Path:
    return write_text_atomic(path, dumps_json(obj, indent=2) + "\n")


def write_yaml_atomic(path: str | os.PathLike[str], obj: Any) -> Path:
    import yaml

    text = yaml.safe_dump(obj, sort_keys=False, default_flow_style=False, allow_unicode=True)
    return write_text_atomic(path, text)


def read_yaml(path: str | os.PathLike[str]) -> Any:
    import yaml

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: YAML file not found. Fix: check the path.")
    with p.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


def read_json(path: str | os.PathLike[str]) -> Any:
    p = Path(path)
    with p.open(encoding="utf-8") as f:
        return json.load(f)


def append_jsonl(path: str | os.PathLike[str], obj: Any) -> None:
    """Append one JSON object as a line, flushed and fsynced."""
    line = dumps_json(obj)  # no indent: json escapes newlines, so this is one line
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("a", encoding="utf-8", buffering=1) as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: str | os.PathLike[str]) -> list[Any]:
    """All complete records of a JSONL file; a torn last line (killed writer) is skipped."""
    p = Path(path)
    if not p.exists():
        return []
    records = []
    lines = p.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break
            raise ValueError(f"{p}:{i + 1}: corrupt JSONL line (not the last one)") from None
    return records


def utf8_problem(path: str | os.PathLike[str]) -> str | None:
    """`<file>:<line>:<column>: not UTF-8 ...` for the first byte of a text file that is not UTF-8,
    None when the whole file decodes (read line by line: manifests can be large)."""
    p = Path(path)
    with p.open("rb") as f:
        for lineno, line in enumerate(f, 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as exc:
                return (
                    f"{p}:{lineno}:{exc.start + 1}: not UTF-8 (byte 0x{line[exc.start]:02x}). "
                    "Fix: re-encode the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)."
                )
    return None
