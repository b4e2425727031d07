"""Run cells one after another in this process; a failing cell is recorded and the others go on."""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from ablations.backends.base import LaunchSettings, Submit
from ablations.backends.job import load_callable
from ablations.grid import GridSpec
from ablations.state import mark_failed, write_pending
from core.results import is_done, record_jobs


def prepare(settings: LaunchSettings, spec: GridSpec) -> Submit:
    """Inline needs no settings; the job id `inline-<pid>` names this launcher process."""

    def submit(cell_dirs: list[Path], grid_dir: Path) -> bool:
        record_jobs(grid_dir, "inline", {d.name: f"inline-{os.getpid()}" for d in cell_dirs})
        run_inline(cell_dirs, settings.cell_fn)
        return True

    return submit


def run_inline(cell_dirs: Sequence[Path], cell_fn: str) -> dict[str, str | None]:
    """{cell dir name: None if it finished, else the error}; every cell is attempted."""
    outcome: dict[str, str | None] = {}
    fn = None
    for i, cell_dir in enumerate(cell_dirs, 1):
        start = time.perf_counter()
        print(f"[inline {i}/{len(cell_dirs)}] {cell_dir.name} ...", flush=True)
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
            print(f"[inline {i}/{len(cell_dirs)}] {cell_dir.name} FAILED: {reason}", flush=True)
            traceback.print_exc()
            continue
        outcome[cell_dir.name] = (
            None if is_done(cell_dir) else "the cell function returned without a valid result.json"
        )
        if outcome[cell_dir.name]:
            mark_failed(cell_dir, outcome[cell_dir.name] or "")
        took = time.perf_counter() - start
        print(f"[inline {i}/{len(cell_dirs)}] {cell_dir.name} done in {took:.1f}s", flush=True)
    return outcome
