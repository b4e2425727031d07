"""submitit LocalExecutor with our own concurrency cap (it has none) and explicit time limits.

Each cell is one job process; at most `max_parallel` run at once (a sliding window); a job that
hits its time limit is requeued as a fresh `CellJob` (resuming from the cell's checkpoint) up to
`max_num_timeout` times. Stages run one after the other; blocks until every cell has finished.

What is tracked is the worker, not submitit's wrapper: the worker adopts the cell's claim from
this launcher, and its claim record (pid, job) is what jobs.json then names and what this loop
waits on, so a worker whose wrapper died is still waited for (never a second writer), and a
SIGTERM to the recorded pid stops the worker as `interrupted`. A worker that died without a word
(SIGKILL, out of memory) leaves its cell `interrupted` (resumable), not failed; a failure carries
the exception the run recorded.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import submitit
from submitit.core.utils import FailedJobError

from ablations.backends.base import LaunchSettings, Stage, Submit
from ablations.backends.job import CellJob, export_repo_path
from ablations.backends.torchrun import check_resources
from ablations.claims import Claims, held_by
from ablations.grid import GridSpec
from ablations.state import mark_failed, mark_interrupted, mark_waiting, recorded_error
from core.lease import LEASE_S, Holder
from core.results import (
    INTERRUPTED,
    SUBMITIT_DIR,
    State,
    claim_holders,
    is_done,
    read_status,
    record_jobs,
)


@dataclass(frozen=True)
class LocalLimits:
    """How local jobs run: `params` for update_parameters (timeout_min, signal_delay_s,
    tasks_per_node, gpus_per_node, ...), the concurrency cap, time-out requeues, poll period."""

    params: dict[str, Any]
    max_parallel: int = 2
    max_num_timeout: int = 3
    poll_s: float = 1.0
    lease_s: float = LEASE_S

    def __post_init__(self) -> None:
        if self.max_parallel < 1:
            raise ValueError(f"backend.max_parallel={self.max_parallel}: must be ≥ 1. Fix: e.g. 2.")


def limits(settings: LaunchSettings, spec: GridSpec) -> LocalLimits:
    """The grid's resources, with `backend.timeout_min` winning, and the `backend.*` caps (one
    node: a multi-node grid is refused)."""
    res, backend = spec.resources, settings.backend
    check_resources(res, "local")
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
        settings.lease_s,
    )


def prepare(settings: LaunchSettings, spec: GridSpec) -> Submit:
    """Check the local settings now; the submit blocks until every cell has finished."""
    checked = limits(settings, spec)

    def submit(stages: list[Stage], grid_dir: Path, claims: Claims) -> bool:
        def record(cell_dir: Path, job: str) -> None:
            record_jobs(grid_dir, "local", {cell_dir.name: job}, settings.lease_s)

        for stage in stages:  # a stage starts when the one before has finished
            ready = [d for d in stage.cells if (b := stage.base_of(d)) is None or is_done(b)]
            for waiting in sorted(set(stage.cells) - set(ready)):
                base = stage.bases[waiting.name]
                if claims.holds(waiting):
                    mark_waiting(waiting, f"waiting: its base {base} is not done")
                claims.release(waiting)
                print(f"[local] {waiting.name} waits: base {base} not done")
            run_local(
                ready, settings.cell_fn, grid_dir / SUBMITIT_DIR, checked, record, claims, record
            )
        return True

    return submit


@dataclass
class Flight:
    """A submitted cell: its job (submitit's wrapper) and the worker pid it runs as."""

    cell_dir: Path
    job: Any
    worker: int = 0

    def workers(self) -> list[Holder]:
        """The live worker records of this job in the cell's claim."""
        job = str(self.job.job_id)
        return [h for h in claim_holders(self.cell_dir) if h.role == "worker" and h.job == job]


def run_local(
    cell_dirs: Sequence[Path],
    cell_fn: str,
    folder: Path,
    limits: LocalLimits,
    on_submit: Callable[[Path, str], None] | None = None,
    claims: Claims | None = None,
    on_worker: Callable[[Path, str], None] | None = None,
) -> dict[str, str | None]:
    """{cell dir name: None if done, else why not}. `on_submit(cell_dir, job id)` is called at
    submission (the id is the wrapper's pid), `on_worker(cell_dir, pid)` once the worker holds
    the claim (again after a requeue)."""
    export_repo_path()
    executor = submitit.LocalExecutor(
        folder=str(folder / "%j"), max_num_timeout=limits.max_num_timeout
    )
    executor.update_parameters(**limits.params)
    claims = Claims(limits.lease_s) if claims is None else claims
    queue = list(cell_dirs)
    flights: list[Flight] = []
    outcome: dict[str, str | None] = {}
    try:
        while queue or flights:
            while queue and len(flights) < limits.max_parallel:
                cell_dir = queue.pop(0)
                if not claims.take(cell_dir):
                    outcome[cell_dir.name] = f"not run: its claim is held by {held_by(cell_dir)}"
                    print(f"[local] {cell_dir.name}: {outcome[cell_dir.name]}", flush=True)
                    continue
                token = claims.hand_over(cell_dir)
                job = executor.submit(
                    CellJob(cell_fn, str(cell_dir), token, limits.lease_s, sigterm=True)
                )
                flights.append(Flight(cell_dir, job))
                print(f"[local] {cell_dir.name}: job {job.job_id}", flush=True)
                if on_submit is not None:
                    on_submit(cell_dir, str(job.job_id))
            time.sleep(limits.poll_s)
            for flight in list(flights):
                workers = flight.workers()
                if workers and workers[0].pid != flight.worker:
                    flight.worker = workers[0].pid
                    if on_worker is not None:
                        on_worker(flight.cell_dir, str(flight.worker))
                if workers or not flight.job.done():
                    continue  # the worker runs (even if its wrapper is gone): keep waiting
                flights.remove(flight)
                name = flight.cell_dir.name
                outcome[name] = settle(flight, claims)
                print(f"[local] {name}: {outcome[name] or 'done'}", flush=True)
    except BaseException:
        stop_workers(flights)
        raise
    finally:
        for flight in flights:
            claims.release(flight.cell_dir)
    return outcome


def stop_workers(flights: Sequence[Flight]) -> None:
    """SIGTERM each running worker (it ends as interrupted, resumable)."""
    for flight in flights:
        for holder in flight.workers():
            with contextlib.suppress(OSError):
                os.kill(holder.pid, signal.SIGTERM)


def settle(flight: Flight, claims: Claims) -> str | None:
    """Why a finished job's cell is not done (None when it is), recording what the worker could
    not: a worker that died without a word leaves the cell interrupted, an error outside the run
    fails it. Writes happen under the claim, and only when nobody else holds it."""
    cell_dir = flight.cell_dir
    try:
        if is_done(cell_dir):
            return None
        ran = _job_value(flight.job)
        if ran is not None and not ran.get("ran", True):
            return f"not run: its claim is held by {ran.get('held_by') or held_by(cell_dir)}"
        state = _status_state(cell_dir)
        if state == State.FAILED:
            return f"FAILED: {recorded_error(cell_dir) or 'no reason recorded'}"
        if state == INTERRUPTED:
            return f"{recorded_error(cell_dir)} (a re-launch resumes it)"
        if not claims.take(cell_dir):  # someone else has the cell now: not ours to write
            return f"not run to the end here; its claim is held by {held_by(cell_dir)}"
        error = _job_error(flight.job)
        if error is not None:
            mark_failed(cell_dir, error)
            return f"FAILED: {error}"
        worker = f"its worker (pid {flight.worker})" if flight.worker else "its job"
        why = (
            f"{worker} died without a word (killed by a signal: SIGKILL, out of memory?); "
            f"see {flight.job.paths.stderr}"
        )
        mark_interrupted(cell_dir, why)
        return f"interrupted: {why} (a re-launch resumes it)"
    finally:
        claims.release(cell_dir)


def _status_state(cell_dir: Path) -> str | None:
    try:
        return (read_status(cell_dir) or {}).get("state")
    except ValueError:
        return None


def _job_value(job: Any) -> dict[str, Any] | None:
    """The worker's return value ({"ran", "held_by"}), None when it raised or left none."""
    try:
        values = job.results()  # one per task; rank 0's comes first
    except Exception:
        return None
    value = values[0] if values else None
    return value if isinstance(value, dict) else None


def _job_error(job: Any) -> str | None:
    """The real exception of a job that raised outside the run (its traceback's last frame's
    exception, every line of it); None when it left no error (died without a word)."""
    try:
        exc = job.exception()
    except Exception:
        return None
    if not isinstance(exc, FailedJobError):
        return None
    return traceback_exception(str(exc))


def traceback_exception(text: str) -> str:
    """`Type: message` of the last exception in a traceback text (multi-line messages kept)."""
    lines = text.strip().splitlines()
    frames = [i for i, ln in enumerate(lines) if ln.startswith('  File "')]
    tail = lines[frames[-1] + 2 :] if frames else lines[-1:]
    tail = [ln for ln in tail if not ln.startswith("-" * 10) and ln.strip()]
    cut = next((i for i, ln in enumerate(tail) if ln.startswith("You can check full logs")), None)
    return "\n".join(tail[:cut]).strip() or text.strip().splitlines()[-1]
