"""Checks before any cell folder is created: what would otherwise fail every cell at run time.

- devices: a cell asking for `train.device=cuda` (or `cuda:N`) where the cells run on this
  machine (inline, local) and no such CUDA device is visible;
- data: every distinct data configuration of the cells to run: its dataset exists, and its
  manifests (train split, validation split, captions when there is caption pre-training) parse,
  with the error naming the file and line (a non-UTF-8 byte included). The synthetic benchmark
  is skipped (the cell generates it).

`launch precheck=false` skips the data checks (data reachable only from the compute nodes).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ablations.cells import CellSpec
from core.io import utf8_problem

LOCAL_BACKENDS = ("inline", "local")


class PrecheckError(ValueError):
    """Cells would fail at run time; the message names the cells, the key or file, and the fix."""


def precheck(cells: Sequence[CellSpec], backend: str, data: bool = True) -> None:
    """Raise PrecheckError listing every problem found (nothing is written either way)."""
    problems = []
    if backend in LOCAL_BACKENDS:
        problems += device_problems(cells, backend)
    if data:
        problems += data_problems(cells)
    if problems:
        raise PrecheckError("\n  ".join(["the cells cannot run:", *problems]))


def _names(cells: Sequence[CellSpec]) -> str:
    shown = ", ".join(c.name for c in cells[:3])
    return shown + (f" and {len(cells) - 3} more" if len(cells) > 3 else "")


def device_problems(cells: Sequence[CellSpec], backend: str) -> list[str]:
    wanted: dict[str, list[CellSpec]] = {}
    for cell in cells:
        device = str(cell.config.train.device)
        if device.startswith("cuda"):
            wanted.setdefault(device, []).append(cell)
    if not wanted:
        return []
    import torch

    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    problems = []
    for device, users in sorted(wanted.items()):
        index = int(device.partition(":")[2] or 0)
        if index < visible:
            continue
        have = f"{visible} CUDA device(s) are visible" if visible else "no CUDA device is visible"
        problems.append(
            f"train.device={device}: {have} on this machine, where backend={backend} runs the "
            f"cells ({len(users)} cell(s): {_names(users)}). Fix: train.device=cpu (or auto), "
            "or run where the GPU is (backend=slurm with a GPU profile)."
        )
    return problems


def data_problems(cells: Sequence[CellSpec]) -> list[str]:
    """One problem per distinct data configuration that cannot be read."""
    seen: dict[str, list[CellSpec]] = {}
    configs: dict[str, tuple[Any, bool]] = {}
    for cell in cells:
        d = cell.config.data
        if d.dataset_name == "synthetic":
            continue
        captions = bool(cell.config.train.caption_steps)
        key = repr((dataclasses.asdict(d), captions))
        seen.setdefault(key, []).append(cell)
        configs[key] = (d, captions)
    problems = []
    for key, users in seen.items():
        problem = read_problem(*configs[key])
        if problem:
            problems.append(f"{problem} ({len(users)} cell(s): {_names(users)})")
    return problems


def read_problem(d: Any, captions: bool) -> str | None:
    """Why the manifests of data config `d` cannot be read (None when they can)."""
    from core.data.datasets import dataset_class, load_records, prepare_data

    try:
        prepare_data(d)  # a missing dataset: the error names the path and close names
        tasks = [d.task, "caption"] if captions and d.task != "caption" else [d.task]
        for task in tasks:
            cfg = dataclasses.replace(d, task=task)
            for split in dict.fromkeys((d.split, d.eval_split)):
                load_records(cfg, split)
    except UnicodeDecodeError:
        return next(
            (p for p in map(utf8_problem, manifest_files(d, dataset_class(d))) if p),
            f"a manifest of data.dataset_name={d.dataset_name} is not UTF-8",
        )
    except (OSError, ValueError, KeyError) as exc:
        return str(exc)
    return None


def manifest_files(d: Any, kind: Any) -> list[Path]:
    """The manifest files a dataset may read, for locating a decoding error."""
    files: list[Path] = []
    for split in dict.fromkeys((d.split, d.eval_split)):
        where = kind.data_location(dataclasses.replace(d, split=split))
        if where.is_file():
            files.append(where)
        elif where.is_dir():
            files += sorted(p for p in where.rglob("*") if p.suffix in (".jsonl", ".csv", ".json"))
    return list(dict.fromkeys(files))
