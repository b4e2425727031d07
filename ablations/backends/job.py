"""The submitted callable: run one cell by its directory; requeue as a fresh instance.

The pickle holds only two strings (the cell function's import path and the cell dir), so a
requeued job never replays stale state: resuming comes from the cell's own checkpoint.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from typing import Any

import submitit


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


class CellJob(submitit.helpers.Checkpointable):
    """`CellJob(cell_fn, cell_dir)()` runs the cell; on preemption/time-out submitit calls
    `checkpoint()`, which resubmits a fresh instance for the same cell dir."""

    def __init__(self, cell_fn: str, cell_dir: str) -> None:
        self.cell_fn = cell_fn
        self.cell_dir = str(cell_dir)

    def __call__(self) -> Any:
        try:
            env = submitit.JobEnvironment()
        except RuntimeError:  # called outside a submitit job (inline use)
            env = None
        if env is not None and env.num_tasks > 1:
            # one task per GPU: RANK/WORLD_SIZE/LOCAL_RANK/MASTER_* for torch.distributed (env://)
            submitit.helpers.TorchDistributedEnvironment().export(overwrite=True)
        return load_callable(self.cell_fn)(self.cell_dir)

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        return submitit.helpers.DelayedSubmission(CellJob(self.cell_fn, self.cell_dir))


REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def export_repo_path() -> None:
    """Put the repo root on PYTHONPATH so job processes can unpickle `ablations`/`core`/cell_fn."""
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if REPO_ROOT not in parts:
        os.environ["PYTHONPATH"] = os.pathsep.join([REPO_ROOT, *parts])
