"""The few records the launcher writes into a cell folder itself; states come from core.results.

The runner owns status.json while it runs; the launcher only writes `pending` before handing a
cell to a backend, `waiting` when it releases one it cannot run yet (its base is not done),
`failed` when a job failed outside the runner and `interrupted` when it was stopped or died
without a word, and moves forced cells aside. Every one of these writes is made while the writer
holds the cell's claim (ablations.claims).
"""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

from core.results import TRASH_DIR, CellStatus, ResultsError, State, read_status


def write_pending(cell_dir: Path) -> None:
    """Mark a cell as handed to a backend, keeping its history (attempts, step)."""
    CellStatus(cell_dir).pending()


def mark_waiting(cell_dir: Path, reason: str) -> None:
    """Release a cell this launcher will not run now (its base is not done)."""
    CellStatus(cell_dir).wait(reason)


def mark_failed(cell_dir: Path, reason: str) -> None:
    """Record a failure the runner could not record itself (import error, killed job, ...);
    a failure the runner already recorded is kept as it is."""
    status = CellStatus(cell_dir)
    if status.state == State.FAILED and status.data.get("error"):
        return
    step = status.data.get("step")
    status.fail(reason, step=None if step is None else int(step))


def recorded_error(cell_dir: Path) -> str | None:
    """The error status.json records (None when none, or when it is unreadable)."""
    try:
        status = read_status(cell_dir) or {}
    except ResultsError:
        return None
    error = status.get("error")
    return str(error) if error else None


def mark_interrupted(cell_dir: Path, reason: str) -> None:
    """Record that a run was stopped from outside (signal, time limit, a worker that died): the
    cell stays resumable; a finished cell is left as it is."""
    status = CellStatus(cell_dir)
    if status.state == State.DONE:
        return
    status.interrupt(reason)


def move_to_trash(cell_dir: Path) -> Path:
    """Move a cell dir to `<grid>/_trash/<cell_id>-<timestamp>/` (never delete results)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    trash = cell_dir.parent / TRASH_DIR
    trash.mkdir(parents=True, exist_ok=True)
    target = trash / f"{cell_dir.name}-{stamp}"
    n = 1
    while target.exists():
        target = trash / f"{cell_dir.name}-{stamp}-{n}"
        n += 1
    shutil.move(os.fspath(cell_dir), os.fspath(target))
    return target
