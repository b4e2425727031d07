"""status.json of one cell: the launcher's view of whether a cell is pending, running, done or failed.

Every transition rewrites the whole file atomically, so a launcher polling the results tree never
reads a torn file. `result.json` (not the status) is the proof that a cell finished.
"""

from __future__ import annotations

import functools
import os
import socket
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.io import read_json, write_json_atomic

STATES = ("pending", "running", "done", "failed")
STATUS_FILE = "status.json"
RESULT_FILE = "result.json"
MAX_ERROR_CHARS = 4000


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@functools.lru_cache(maxsize=8)
def git_commit(repo_dir: str | None = None) -> str:
    """`git rev-parse HEAD` of the repository containing this file (or `repo_dir`); "unknown" when
    git or the repository is unavailable (e.g. an installed wheel)."""
    where = repo_dir or str(Path(__file__).resolve().parent)
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and commit else "unknown"


def is_done(cell_dir: str | os.PathLike[str]) -> bool:
    """A cell is done exactly when its result.json exists (it is written last, atomically)."""
    return (Path(cell_dir) / RESULT_FILE).is_file()


def read_status(cell_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The parsed status.json, or None when the cell has none yet."""
    path = Path(cell_dir) / STATUS_FILE
    if not path.is_file():
        return None
    return read_json(path)


class CellStatus:
    """Read-modify-write helper over `cell_dir/status.json` (format: results_format.md)."""

    def __init__(self, cell_dir: str | os.PathLike[str]) -> None:
        self.cell_dir = Path(cell_dir)
        self.path = self.cell_dir / STATUS_FILE
        existing = read_status(self.cell_dir)
        self.data: dict[str, Any] = existing if existing is not None else self._blank()

    @staticmethod
    def _blank() -> dict[str, Any]:
        t = now_iso()
        return {
            "state": "pending",
            "attempts": 0,
            "host": "",
            "git_commit": "",
            "started": t,
            "updated": t,
            "finished": None,
            "error": None,
            "failed_step": None,
            "job_ids": [],
            "step": 0,
        }

    @property
    def state(self) -> str:
        return self.data["state"]

    def _write(self) -> None:
        self.data["updated"] = now_iso()
        write_json_atomic(self.path, self.data)

    def pending(self, job_id: str | None = None) -> None:
        """Mark submitted but not started (the launcher's call); keeps attempts and job ids."""
        self.data["state"] = "pending"
        if job_id:
            self._add_job(job_id)
        self._write()

    def _add_job(self, job_id: str) -> None:
        if job_id not in self.data["job_ids"]:
            self.data["job_ids"].append(str(job_id))

    def start(
        self, host: str | None = None, commit: str | None = None, job_id: str | None = None
    ) -> None:
        """Begin an attempt: attempts + 1, state running, errors cleared, step kept (resume)."""
        self.data.update(
            state="running",
            attempts=int(self.data.get("attempts", 0)) + 1,
            host=host or socket.gethostname(),
            git_commit=commit or git_commit(),
            started=now_iso(),
            finished=None,
            error=None,
            failed_step=None,
        )
        if job_id is None:
            job_id = os.environ.get("SLURM_JOB_ID") or os.environ.get("SUBMITIT_JOB_ID")
        if job_id:
            self._add_job(job_id)
        self._write()

    @property
    def attempts(self) -> int:
        return int(self.data.get("attempts", 0))

    @property
    def git_commit(self) -> str:
        return self.data.get("git_commit") or "unknown"

    def update(self, step: int) -> None:
        self.data["step"] = int(step)
        self._write()

    def finish(self, step: int | None = None) -> None:
        if step is not None:
            self.data["step"] = int(step)
        self.data.update(state="done", finished=now_iso(), error=None, failed_step=None)
        self._write()

    def fail(self, reason: str | BaseException, step: int | None = None) -> None:
        """Record a failure; the message is truncated (its tail kept) to keep the file small."""
        text = f"{type(reason).__name__}: {reason}" if isinstance(reason, BaseException) else reason
        if len(text) > MAX_ERROR_CHARS:
            text = "…" + text[-MAX_ERROR_CHARS:]
        self.data.update(
            state="failed",
            error=text,
            failed_step=None if step is None else int(step),
            finished=None,
        )
        if step is not None:
            self.data["step"] = int(step)
        self._write()
