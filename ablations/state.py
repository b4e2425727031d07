"""Cell states read from the results tree, and the few status records the launcher writes itself.

new: no cell dir (or no config.yaml); done: result.json exists; failed: status.json says failed;
running: status running/pending AND its job is alive (squeue) or, when liveness is unknown, the
status was updated within `stale_s`; incomplete: anything else that has a frozen config (a killed
job, a preempted cell waiting for a re-launch). The runner owns status.json while it runs; the
launcher only writes `pending` before submitting and `failed` when a job died without a word.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.training.status import CellStatus

NEW, DONE, RUNNING, FAILED, INCOMPLETE = "new", "done", "running", "failed", "incomplete"
STATES = (NEW, DONE, RUNNING, FAILED, INCOMPLETE)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def parse_iso(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def read_status(cell_dir: Path) -> dict[str, Any] | None:
    path = cell_dir / "status.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, OSError):
        return {"state": "unreadable", "error": f"{path} is not valid JSON"}


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def classify(
    cell_dir: Path,
    live_jobs: set[str] | None = None,
    job_ids: Iterable[str] = (),
    stale_s: float = 1800.0,
    now: float | None = None,
    local_pid: int | None = None,
) -> tuple[str, dict[str, Any] | None]:
    """(state, status dict) of one cell dir.

    Liveness of a running/pending cell, in order: its SLURM job ids (`job_ids`, from the manifest)
    against `live_jobs` (None = squeue unavailable); else, for inline/local runs on this host, whether `local_pid` (the
    launcher or job process) still exists; else whether the status was updated within `stale_s`.
    """
    if (cell_dir / "result.json").is_file():
        return DONE, read_status(cell_dir)
    if not (cell_dir / "config.yaml").is_file():
        return NEW, None
    status = read_status(cell_dir)
    if status is None:
        return INCOMPLETE, None
    state = status.get("state")
    if state == "failed":
        return FAILED, status
    if state in ("running", "pending"):
        ids = {str(j) for j in job_ids}
        if live_jobs is not None and ids:
            return (RUNNING if ids & live_jobs else INCOMPLETE), status
        if local_pid is not None and status.get("host") == socket.gethostname():
            return (RUNNING if pid_alive(local_pid) else INCOMPLETE), status
        updated = parse_iso(status.get("updated") or status.get("started"))
        current = time.time() if now is None else now
        if state == "running" and updated is not None and current - updated < stale_s:
            return RUNNING, status
    return INCOMPLETE, status


def write_pending(cell_dir: Path) -> None:
    """Mark a cell as handed to a backend, keeping its history (attempts, job ids)."""
    CellStatus(cell_dir).pending()


def mark_failed(cell_dir: Path, reason: str) -> None:
    """Record a failure the runner could not record itself (import error, killed job, ...);
    a failure the runner already recorded is kept as it is."""
    status = CellStatus(cell_dir)
    if status.state == "failed" and status.data.get("error"):
        return
    step = status.data.get("step")
    status.fail(reason, step=None if step is None else int(step))


def move_to_trash(cell_dir: Path) -> Path:
    """Move a cell dir to `<grid>/_trash/<cell_id>-<timestamp>/` (never delete results)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    trash = cell_dir.parent / "_trash"
    trash.mkdir(parents=True, exist_ok=True)
    target = trash / f"{cell_dir.name}-{stamp}"
    n = 1
    while target.exists():
        target = trash / f"{cell_dir.name}-{stamp}-{n}"
        n += 1
    shutil.move(os.fspath(cell_dir), os.fspath(target))
    return target
