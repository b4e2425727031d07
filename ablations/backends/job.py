"""Running one cell as its claim holder: the submitted callable, and what inline runs call too.

The worker of a cell (a local or SLURM job's rank 0) claims the cell before anything else
(adopting the claim of the launcher that queued it), keeps the claim alive while it runs and
releases it when it stops; a cell whose claim someone else holds is not run (never two writers).
A failure is recorded in status.json with the real exception; an interruption (SIGTERM for local
jobs, Ctrl-C, a time-limit requeue) is recorded as `interrupted`, resumable by a plain re-launch.

The pickle holds only plain values (cell function path, cell dir, the launcher's claim token,
the lease), so a requeued job never replays stale state: resuming comes from the checkpoint.
"""

from __future__ import annotations

import importlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import submitit

from ablations.claims import held_by
from ablations.state import mark_failed, mark_interrupted
from core.lease import HEARTBEAT, LEASE_S, Lease, exit_on_loss
from core.results import claim_holders, claim_path, is_done


class Interrupted(BaseException):
    """A stop signal arrived (SIGTERM for local jobs): the run ends as `interrupted`."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


def _raise_interrupted(signum: int, frame: Any) -> None:
    signal.signal(signum, signal.SIG_DFL)  # a second signal ends the process at once
    raise Interrupted(signum)


def load_callable(path: str) -> Callable[[str], Any]:
    """`package.module:function` → the function (the configured `cell_fn`)."""
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(
            f"cell_fn={path!r}: expected module:function. Fix: e.g. core.cell:run_cell."
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(f"cell_fn={path!r}: cannot import {module_name} ({exc}).") from exc
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise AttributeError(f"cell_fn={path!r}: {module_name} has no callable {attr!r}.")
    return fn


def interruption(exc: BaseException) -> str:
    """The status.json reason of a run stopped by `exc` (not an Exception: a stop from outside)."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted by Ctrl-C (SIGINT)"
    if isinstance(exc, SystemExit):
        return f"stopped by SystemExit({exc.code}) (a time-limit requeue?)"
    return f"interrupted: {exc}"


def run_held(cell_fn: str, cell_dir: str | os.PathLike[str]) -> Any:
    """Run the cell function here; the caller holds the cell's claim."""
    try:
        return load_callable(cell_fn)(str(cell_dir))
    except Exception as exc:
        mark_failed(Path(cell_dir), f"{type(exc).__name__}: {exc}")
        raise
    except BaseException as exc:
        mark_interrupted(Path(cell_dir), interruption(exc))
        raise


def run_claimed(
    cell_fn: str,
    cell_dir: str | os.PathLike[str],
    adopt: str = "",
    lease_s: float = LEASE_S,
    job: str = "",
) -> dict[str, Any]:
    """Claim the cell (adopting `adopt`'s claim), run it, release: {"ran": bool, "held_by"}."""
    cell_dir = Path(cell_dir)
    lease = Lease(claim_path(cell_dir), "worker", job, lease_s, on_lost=exit_on_loss)
    if not lease.try_acquire(adopt=adopt):
        who = held_by(cell_dir)
        print(f"{cell_dir.name}: not run here, its claim is held by {who}", flush=True)
        return {"ran": False, "held_by": who}
    HEARTBEAT.add(lease)
    try:
        run_held(cell_fn, cell_dir)
    finally:
        HEARTBEAT.remove(lease)
        lease.release()
    return {"ran": True, "held_by": ""}


def follow_rank0(cell_fn: str, cell_dir: str, job: str, wait_s: float) -> dict[str, Any]:
    """A rank > 0 runs the cell once its job's rank 0 holds the claim (or the cell is done, when
    the run returns at once); if rank 0 stepped aside it gives up after `wait_s`. Ranks > 0 write
    nothing before they have joined rank 0's process group."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if is_done(cell_dir) or any(
            h.role == "worker" and h.job == job for h in claim_holders(cell_dir)
        ):
            load_callable(cell_fn)(cell_dir)
            return {"ran": True, "held_by": ""}
        time.sleep(0.2)
    return {"ran": False, "held_by": held_by(Path(cell_dir))}


class CellJob(submitit.helpers.Checkpointable):
    """`CellJob(cell_fn, cell_dir, adopt, lease_s, sigterm)()` claims and runs the cell; on
    preemption/time-out submitit calls `checkpoint()`, which resubmits a fresh instance for the
    same cell dir (it claims the cell anew). `sigterm`: a SIGTERM stops the run as interrupted
    (local jobs; on SLURM submitit's own signal handling stays in charge)."""

    def __init__(
        self,
        cell_fn: str,
        cell_dir: str,
        adopt: str = "",
        lease_s: float = LEASE_S,
        sigterm: bool = False,
    ) -> None:
        self.cell_fn = cell_fn
        self.cell_dir = str(cell_dir)
        self.adopt = adopt
        self.lease_s = float(lease_s)
        self.sigterm = sigterm

    def __call__(self) -> Any:
        try:
            env = submitit.JobEnvironment()
        except RuntimeError:  # called outside a submitit job (inline use)
            env = None
        if env is not None and env.num_tasks > 1:
            # one task per GPU: RANK/WORLD_SIZE/LOCAL_RANK/MASTER_* for torch.distributed (env://)
            submitit.helpers.TorchDistributedEnvironment().export(overwrite=True)
        if self.sigterm:
            signal.signal(signal.SIGTERM, _raise_interrupted)
        job = str(env.job_id) if env is not None else ""
        if env is not None and env.global_rank > 0:
            return follow_rank0(self.cell_fn, self.cell_dir, job, 2 * self.lease_s)
        return run_claimed(self.cell_fn, self.cell_dir, self.adopt, self.lease_s, job)

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        fresh = CellJob(self.cell_fn, self.cell_dir, "", self.lease_s, self.sigterm)
        return submitit.helpers.DelayedSubmission(fresh)


REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def export_repo_path() -> None:
    """Put the repo root on PYTHONPATH so job processes can unpickle `ablations`/`core`/cell_fn."""
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if REPO_ROOT not in parts:
        os.environ["PYTHONPATH"] = os.pathsep.join([REPO_ROOT, *parts])
