"""Job liveness from the scheduler: `squeue` for queued/running ids, `sinfo` for a controller.

Who holds each cell is recorded in the grid's jobs.json (core.results.record_jobs); liveness comes
from `squeue` only: without SLURM accounting sacct answers nothing useful, and the results tree is
the source of truth for everything else.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from core.results import read_jobs, uses_scheduler


def _ask(command: list[str], timeout_s: float) -> str | None:
    """stdout of a scheduler command, None when it is absent, fails or hangs past `timeout_s`."""
    if shutil.which(command[0]) is None:
        return None
    try:
        proc = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None


def live_jobs(timeout_s: float = 10.0) -> set[str] | None:
    """Ids of queued/running jobs (array tasks as `<array>_<index>`), or None if squeue fails."""
    out = _ask(["squeue", "--noheader", "--array", "--format=%i|%A"], timeout_s)
    if out is None:
        return None
    return {part for line in out.splitlines() for part in line.strip().split("|") if part}


def grid_live_jobs(grid_dir: Path) -> set[str] | None:
    """`live_jobs()` when the grid has ever used a scheduler, else None without calling squeue
    (which hangs ~10 s where slurm-client is installed but no controller answers)."""
    return live_jobs() if uses_scheduler(read_jobs(grid_dir)) else None


def sinfo_answers(timeout_s: float = 5.0) -> bool:
    """True when a SLURM controller answers `sinfo` within `timeout_s` (not merely on PATH)."""
    return _ask(["sinfo", "--noheader", "--format=%P"], timeout_s) is not None
