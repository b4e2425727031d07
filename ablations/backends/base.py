"""What every backend receives and returns: the launch settings and the `submit` it prepares.

A backend is a `prepare(settings, spec) -> submit` function: `prepare` checks every setting before
anything is written (bad values raise ValueError naming the key), and `submit(stages, grid_dir,
claims)` runs or submits the cells stage by stage, records who holds them in jobs.json and returns
whether it waited for them to finish (then the launcher summarizes and collects). `claims` holds
the claim of every cell of the stages (ablations.claims): the backend runs a cell under it, hands
it to the cell's worker, or releases it once a scheduler has the cell. A cell of a later stage
may start from a base cell of an earlier one (`Stage.bases`): it runs only once that base is done
(SLURM: an `afterok` dependency on the base's job), so one launch runs or queues the whole DAG.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ablations.claims import Claims
from ablations.grid import GridSpec
from core.lease import LEASE_S
from core.results import STALE_S


@dataclass(frozen=True)
class Stage:
    """Cells that may run together; `bases` maps a cell folder name to its base's folder name."""

    name: str
    cells: list[Path]
    bases: dict[str, str] = field(default_factory=dict)

    def base_of(self, cell_dir: Path) -> Path | None:
        base = self.bases.get(cell_dir.name)
        return cell_dir.parent / base if base else None


Submit = Callable[[list[Stage], Path, Claims], bool]


@dataclass(frozen=True)
class LaunchSettings:
    """The launcher settings a backend may read."""

    cell_fn: str  # module:function run on each cell dir
    backend: Mapping[str, Any] = field(default_factory=dict)  # the `backend.*` block
    wait: bool = False  # slurm: block until the submitted cells finish
    stale_s: float = STALE_S
    lease_s: float = LEASE_S  # of the grid lock and the cell claims (core.lease)


Prepare = Callable[[LaunchSettings, GridSpec], Submit]
