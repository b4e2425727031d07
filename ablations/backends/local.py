"""submitit LocalExecutor with our own concurrency cap (it has none) and explicit time limits.

Each cell is one job process; at most `max_parallel` run at once (a sliding window); a job that
hits its time limit is requeued as a fresh `CellJob` (resuming from the cell's checkpoint) up to
`max_num_timeout` times. Stages run one after the other; blocks until every cell has finished.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import submitit

from ablations.backends.base import LaunchSettings, Stage, Submit
from ablations.backends.job import CellJob, export_repo_path
from ablations.grid import GridSpec
from ablations.state import mark_failed, mark_waiting
from core.results import SUBMITIT_DIR, is_done, record_jobs


@dataclass(frozen=True)
class LocalLimits:
    """How local jobs run: `params` for update_parameters (timeout_min, signal_delay_s,
    tasks_per_node, gpus_per_node, ...), the concurrency cap, time-out requeues, poll period."""

    params: dict[str, Any]
    max_parallel: int = 2
    max_num_timeout: int = 3
    poll_s: float = 1.0

    def __post_init__(self) -> None:
        if self.max_parallel < 1:
            raise ValueError(f"backend.max_parallel={self.max_parallel}: must be ≥ 1. Fix: e.g. 2.")


def limits(settings: LaunchSettings, spec: GridSpec) -> LocalLimits:
    """The grid's resources, with `backend.timeout_min` winning, and the `backend.*` caps."""
    res, backend = spec.resources, settings.backend
    gpus = int(res.get("gpus") or 0)
    params = {
        "timeout_min": float(backend.get("timeout_min") or res["timeout_min"]),
        "signal_delay_s": int(backend.get("signal_delay_s", 30)),
        "tasks_per_node": int(res.get("tasks") or max(gpus, 1)),
        "gpus_per_node": gpus,
        "nodes": 1,
    }
    return LocalLimits(
        params,
        int(backend.get("max_parallel", 2)),
        int(backend.get("max_num_timeout", 3)),
        float(backend.get("poll_s", 1.0)),
    )


def prepare(settings: LaunchSettings, spec: GridSpec) -> Submit:
    """Check the local settings now; the submit blocks until every cell has finished."""
    checked = limits(settings, spec)

    def submit(stages: list[Stage], grid_dir: Path) -> bool:
        for stage in stages:  # a stage starts when the one before has finished
            ready = [d for d in stage.cells if (b := stage.base_of(d)) is None or is_done(b)]
            for waiting in sorted(set(stage.cells) - set(ready)):
                mark_waiting(waiting, f"waiting: its base {stage.bases[waiting.name]} is not done")
                print(f"[local] {waiting.name} waits: base {stage.bases[waiting.name]} not done")
            run_local(
                ready,
                settings.cell_fn,
                grid_dir / SUBMITIT_DIR,
                checked,
                on_submit=lambda d, job: record_jobs(grid_dir, "local", {d.name: job}),
            )
        return True

    return submit


def run_local(
    cell_dirs: Sequence[Path],
    cell_fn: str,
    folder: Path,
    limits: LocalLimits,
    on_submit: Callable[[Path, str], None] | None = None,
) -> dict[str, str | None]:
    """{cell dir name: None if done, else the error}."""
    export_repo_path()
    executor = submitit.LocalExecutor(
        folder=str(folder / "%j"), max_num_timeout=limits.max_num_timeout
    )
    executor.update_parameters(**limits.params)
    queue = list(cell_dirs)
    running: dict[Any, Path] = {}
    outcome: dict[str, str | None] = {}
    while queue or running:
        while queue and len(running) < limits.max_parallel:
            cell_dir = queue.pop(0)
            job = executor.submit(CellJob(cell_fn, str(cell_dir)))
            running[job] = cell_dir
            print(f"[local] {cell_dir.name}: job {job.job_id}", flush=True)
            if on_submit is not None:
                on_submit(cell_dir, str(job.job_id))
        time.sleep(limits.poll_s)
        for job, cell_dir in list(running.items()):
            if not job.done():
                continue
            del running[job]
            outcome[cell_dir.name] = job_error(job, cell_dir)
            if outcome[cell_dir.name]:
                mark_failed(cell_dir, outcome[cell_dir.name] or "")
            state = (
                "FAILED: " + (outcome[cell_dir.name] or "") if outcome[cell_dir.name] else "done"
            )
            print(f"[local] {cell_dir.name}: {state}", flush=True)
    return outcome


def job_error(job: Any, cell_dir: Path) -> str | None:
    """None when the cell wrote a valid result.json; else the job's exception (last line) or a
    reason."""
    if is_done(cell_dir):
        return None
    try:
        exc = job.exception()
    except Exception as err:  # UncompletedJobError: died without a result pickle
        exc = err
    if exc is None:
        return "job finished without writing a valid result.json"
    lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
    return f"{type(exc).__name__}: {lines[-1] if lines else exc}"
