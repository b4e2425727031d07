"""What every backend receives and returns: the launch settings and the `submit` it prepares.

A backend is a `prepare(settings, spec) -> submit` function: `prepare` checks every setting before
anything is written (bad values raise ValueError naming the key), and `submit(cell_dirs, grid_dir)`
runs or submits the cells, records who holds them in jobs.json and returns whether it waited for
them to finish (then the launcher summarizes and collects).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ablations.grid import GridSpec
from core.results import STALE_S

Submit = Callable[[list[Path], Path], bool]


@dataclass(frozen=True)
class LaunchSettings:
    """The launcher settings a backend may read."""

    cell_fn: str  # module:function run on each cell dir
    backend: Mapping[str, Any] = field(default_factory=dict)  # the `backend.*` block
    wait: bool = False  # slurm: block until the submitted cells finish
    stale_s: float = STALE_S


Prepare = Callable[[LaunchSettings, GridSpec], Submit]
