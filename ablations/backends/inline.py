"""Run cells one after another in this process, stage by stage; a failing cell is recorded and the
others go on; a cell whose base is not done waits (it stays incomplete for the next launch)."""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from ablations.backends.base import LaunchSettings, Stage, Submit
from ablations.backends.job import load_callable
from ablations.grid import GridSpec
from ablations.state import mark_failed, mark_waiting, write_pending
from core.results import is_done, record_jobs


def prepare(settings: LaunchSettings, spec: GridSpec) -> Submit:
    """Inline needs no settings; the job id `inline-<pid>` names this launcher process."""

    def submit(stages: list[Stage], grid_dir: Path) -> bool:
        every = [d for stage in stages for d in stage.cells]
        record_jobs(grid_dir, "inline", {d.name: f"inline-{os.getpid()}" for d in every})
        done = 0
        for stage in stages:
            run_inline(stage.cells, settings.cell_fn, stage, done, len(every))
            done += len(stage.cells)
        return True

    return submit


def run_inline(
    cell_dirs: Sequence[Path],
    cell_fn: str,
    stage: Stage | None = None,
    offset: int = 0,
    total: int | None = None,
) -> dict[str, str | None]:
    """{cell dir name: None if it finished, else the error}; every cell is attempted, except one
    whose base (per `stage`) is not done."""
    outcome: dict[str, str | None] = {}
    fn = None
    total = total or len(cell_dirs)
    for i, cell_dir in enumerate(cell_dirs, offset + 1):
        start = time.perf_counter()
        base = stage.base_of(cell_dir) if stage is not None else None
        if base is not None and not is_done(base):
            outcome[cell_dir.name] = f"waiting: its base {base.name} is not done"
            mark_waiting(cell_dir, outcome[cell_dir.name])
            print(f"[inline {i}/{total}] {cell_dir.name} waits: base {base.name} not done")
            continue
        print(f"[inline {i}/{total}] {cell_dir.name} ...", flush=True)
        try:
            fn = fn or load_callable(cell_fn)
            fn(str(cell_dir))
        except KeyboardInterrupt:
            write_pending(cell_dir)  # interrupted, not failed: the next launch resumes it
            raise
        except Exception as exc:  # one cell's failure never stops the others
            reason = f"{type(exc).__name__}: {exc}"
            mark_failed(cell_dir, reason)
            outcome[cell_dir.name] = reason
            print(f"[inline {i}/{total}] {cell_dir.name} FAILED: {reason}", flush=True)
            traceback.print_exc()
            continue
        outcome[cell_dir.name] = (
            None if is_done(cell_dir) else "the cell function returned without a valid result.json"
        )
        if outcome[cell_dir.name]:
            mark_failed(cell_dir, outcome[cell_dir.name] or "")
        took = time.perf_counter() - start
        print(f"[inline {i}/{total}] {cell_dir.name} done in {took:.1f}s", flush=True)
    return outcome
