"""Run cells one after another in this process, stage by stage, each under this launcher's claim;
a failing cell is recorded and the others go on; a cell whose base is not done waits (it stays
incomplete for the next launch); a cell whose claim someone else holds is not run."""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from ablations.backends.base import LaunchSettings, Stage, Submit
from ablations.backends.grid_progress import GridProgress
from ablations.backends.job import run_held
from ablations.backends.torchrun import check_resources
from ablations.claims import Claims, held_by
from ablations.grid import GridSpec
from ablations.state import mark_failed, mark_waiting, recorded_error
from core.results import is_done, record_jobs


def prepare(settings: LaunchSettings, spec: GridSpec) -> Submit:
    """Inline needs no settings (a multi-node grid is refused); the job id `inline-<pid>` names
    this launcher process."""
    check_resources(spec.resources, "inline")

    def submit(stages: list[Stage], grid_dir: Path, claims: Claims) -> bool:
        every = [d for stage in stages for d in stage.cells]
        jobs = {d.name: f"inline-{os.getpid()}" for d in every}
        record_jobs(grid_dir, "inline", jobs, settings.lease_s)
        done = 0
        progress = GridProgress(every)
        for stage in stages:
            run_inline(stage.cells, settings.cell_fn, stage, done, len(every), claims, progress)
            done += len(stage.cells)
        return True

    return submit


def run_inline(
    cell_dirs: Sequence[Path],
    cell_fn: str,
    stage: Stage | None = None,
    offset: int = 0,
    total: int | None = None,
    claims: Claims | None = None,
    progress: GridProgress | None = None,
) -> dict[str, str | None]:
    """{cell dir name: None if it finished, else why not}; every cell is attempted, except one
    whose base (per `stage`) is not done or whose claim another process holds."""
    outcome: dict[str, str | None] = {}
    own = claims is None
    claims = Claims() if claims is None else claims
    total = total or len(cell_dirs)
    try:
        for i, cell_dir in enumerate(cell_dirs, offset + 1):
            tag = f"[inline {i}/{total}] {cell_dir.name}"
            if not claims.take(cell_dir):
                outcome[cell_dir.name] = f"not run: its claim is held by {held_by(cell_dir)}"
                print(f"{tag} {outcome[cell_dir.name]}", flush=True)
                continue
            start = time.perf_counter()
            outcome[cell_dir.name] = why = run_one(cell_dir, cell_fn, stage, tag, claims)
            if progress is not None and not (why or "").startswith("waiting"):
                ok = why is None
                print(progress.record(cell_dir, time.perf_counter() - start, ok), flush=True)
    finally:
        if own:
            claims.close()
    return outcome


def run_one(
    cell_dir: Path, cell_fn: str, stage: Stage | None, tag: str, claims: Claims
) -> str | None:
    """Run one claimed cell here and release it; None when it finished, else why not."""
    start = time.perf_counter()
    try:
        base = stage.base_of(cell_dir) if stage is not None else None
        if base is not None and not is_done(base):
            why = f"waiting: its base {base.name} is not done"
            mark_waiting(cell_dir, why)
            print(f"{tag} waits: base {base.name} not done", flush=True)
            return why
        print(f"{tag} ...", flush=True)
        claims.running(cell_dir)
        try:
            run_held(cell_fn, cell_dir)  # records a failure or an interruption itself
        except Exception as exc:  # one cell's failure never stops the others
            why = recorded_error(cell_dir) or f"{type(exc).__name__}: {exc}"
            print(f"{tag} FAILED: {why}", flush=True)
            traceback.print_exc()
            return why
        if not is_done(cell_dir):
            why = "the cell function returned without a valid result.json"
            mark_failed(cell_dir, why)
            return why
        print(f"{tag} done in {time.perf_counter() - start:.1f}s", flush=True)
        return None
    finally:
        claims.release(cell_dir)
