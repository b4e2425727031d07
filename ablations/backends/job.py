"""Running one cell as its claim holder: the submitted callable, and what inline runs call too.

The worker of a cell (a local or SLURM job's rank 0) claims the cell before anything else
(adopting the claim of the launcher that queued it), keeps the claim alive while it runs and
releases it when it stops; a cell whose claim someone else holds is not run (never two writers).
A failure is recorded in status.json with the real exception; an interruption (SIGTERM for local
jobs, Ctrl-C, a time-limit requeue) is recorded as `interrupted`, resumable by a plain re-launch.

A multi-node cell is a `TorchrunCellJob` per node instead: node 0's task claims the cell and
supervises the torchrun that runs it (ablations.backends.torchrun).

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

from ablations.backends.torchrun import (
    DEFAULT_PORT,
    TorchrunFailed,
    kill_tree,
    run_child,
    torchrun_argv,
)
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
    return claimed(cell_dir, lambda: run_held(cell_fn, cell_dir), adopt, lease_s, job)


def claimed(
    cell_dir: str | os.PathLike[str],
    body: Callable[[], Any],
    adopt: str = "",
    lease_s: float = LEASE_S,
    job: str = "",
    on_lost: Callable[[Lease], None] = exit_on_loss,
) -> dict[str, Any]:
    """Run `body` holding the cell's claim (heartbeat while it runs, released after); a claim
    someone else holds is left to them: {"ran": bool, "held_by"}."""
    cell_dir = Path(cell_dir)
    lease = Lease(claim_path(cell_dir), "worker", job, lease_s, on_lost=on_lost)
    if not lease.try_acquire(adopt=adopt):
        who = held_by(cell_dir)
        print(f"{cell_dir.name}: not run here, its claim is held by {who}", flush=True)
        return {"ran": False, "held_by": who}
    HEARTBEAT.add(lease)
    try:
        body()
    finally:
        HEARTBEAT.remove(lease)
        lease.release()
    return {"ran": True, "held_by": ""}


def rank0_holds(cell_dir: str | os.PathLike[str], job: str, wait_s: float) -> bool:
    """Whether, within `wait_s`, the cell is done or its claim is held by `job`'s rank 0."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if is_done(cell_dir) or any(
            h.role == "worker" and h.job == job for h in claim_holders(cell_dir)
        ):
            return True
        time.sleep(0.2)
    return False


def follow_rank0(cell_fn: str, cell_dir: str, job: str, wait_s: float) -> dict[str, Any]:
    """A rank > 0 runs the cell once its job's rank 0 holds the claim (or the cell is done, when
    the run returns at once); if rank 0 stepped aside it gives up after `wait_s`. Ranks > 0 write
    nothing before they have joined rank 0's process group."""
    if rank0_holds(cell_dir, job, wait_s):
        load_callable(cell_fn)(cell_dir)
        return {"ran": True, "held_by": ""}
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


class TorchrunCellJob(submitit.helpers.Checkpointable):
    """One node's task of a multi-node cell (one task per node): `TorchrunCellJob(cell_dir,
    gpus_per_node, port, lease_s)()` runs torchrun with `gpus_per_node` processes here, the
    rendezvous on the job's first node at `port` (ablations.backends.torchrun). Node 0's task
    claims the cell for the whole run; the others start once it has. `checkpoint()` resubmits a
    fresh instance (core.cell resumes from the cell's checkpoint)."""

    def __init__(
        self, cell_dir: str, gpus_per_node: int, port: int = DEFAULT_PORT, lease_s: float = LEASE_S
    ) -> None:
        self.cell_dir = str(cell_dir)
        self.gpus_per_node = int(gpus_per_node)
        self.port = int(port)
        self.lease_s = float(lease_s)

    def command(self, env: submitit.JobEnvironment) -> list[str]:
        """The torchrun command of this node of job `env` (the same on every node)."""
        endpoint = f"{env.hostnames[0]}:{self.port}"
        return torchrun_argv(
            self.cell_dir, env.num_nodes, self.gpus_per_node, endpoint, str(env.job_id)
        )

    def __call__(self) -> dict[str, Any]:
        env = submitit.JobEnvironment()
        job, argv = str(env.job_id), self.command(env)
        requeue = signal.Signals[f"SIG{submitit.JobEnvironment.USR_SIG}"]
        export_repo_path()  # torchrun's workers import core from the repo
        if env.global_rank == 0:
            return claimed(
                self.cell_dir, lambda: self.node0(argv, requeue), "", self.lease_s, job,
                on_lost=_kill_tree_and_exit,
            )  # fmt: skip
        if not rank0_holds(self.cell_dir, job, 2 * self.lease_s) or is_done(self.cell_dir):
            return {"ran": False, "held_by": held_by(Path(self.cell_dir))}
        code, child = run_child(argv, requeue)
        if code != 0:
            raise TorchrunFailed(child.reason(code, f"node {env.node}"))
        return {"ran": True, "held_by": ""}

    def node0(self, argv: list[str], requeue: signal.Signals) -> None:
        """Run torchrun holding the claim; record what core.cell could not (a dead torchrun, a
        stop from outside)."""
        cell_dir = Path(self.cell_dir)
        if is_done(cell_dir):
            return
        try:
            code, child = run_child(argv, requeue)
        except Exception as exc:  # e.g. submitit's "not requeued: timed out too many times"
            mark_failed(cell_dir, f"{type(exc).__name__}: {exc}")
            raise
        except BaseException as exc:
            mark_interrupted(cell_dir, interruption(exc))
            raise
        why = child.reason(code, "node 0") if code != 0 else ""
        if not why and not is_done(cell_dir):
            why = "torchrun on node 0 exited with code 0 without a valid result.json"
        if why:
            mark_failed(cell_dir, why)
            raise TorchrunFailed(why)

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        fresh = TorchrunCellJob(self.cell_dir, self.gpus_per_node, self.port, self.lease_s)
        return submitit.helpers.DelayedSubmission(fresh)


def _kill_tree_and_exit(lease: Lease) -> None:
    """A lost claim: torchrun and its workers stop with this task, writing nothing more."""
    kill_tree()
    exit_on_loss(lease)


REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def export_repo_path() -> None:
    """Put the repo root on PYTHONPATH so job processes can unpickle `ablations`/`core`/cell_fn."""
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if REPO_ROOT not in parts:
        os.environ["PYTHONPATH"] = os.pathsep.join([REPO_ROOT, *parts])
