"""The results tree: where every file lives, the one set of cell states and the one `classify`,
status.json (`CellStatus`), result.json (schema, `write_result`, `read_result`), the `cell` block of
config.yaml, plan.json and the job manifest jobs.json.

    results/<grid>/plan.json, jobs.json, _trash/, _analysis/, _submitit/, _locks/
    results/<grid>/<cell_id>/config.yaml, status.json, metrics.jsonl, result.json,
                             checkpoints/, diagnostics/, wandb/

The format is specified in docs/results_format.md. Standard library only (YAML goes through
core.io, which imports it lazily): the launcher, the cell runner, analysis and the tests share this
module, and analysis runs where torch is not installed. Every write is atomic (core.io).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.io import read_yaml, write_json_atomic, write_yaml_atomic
from core.lease import (
    HEARTBEAT,
    LEASE_S,
    Holder,
    Lease,
    exit_on_loss,
    live_holders,
    pid_alive,
)

# ---- layout ------------------------------------------------------------------------------------

PLAN_FILE = "plan.json"
JOBS_FILE = "jobs.json"
TRASH_DIR = "_trash"
ANALYSIS_DIR = "_analysis"
SUBMITIT_DIR = "_submitit"
LOCKS_DIR = "_locks"  # the grid lock and the cell claims (core.lease leases)
GRID_LOCK = "grid.lock"
CLAIM_SUFFIX = ".claim"
CONFIG_FILE = "config.yaml"
STATUS_FILE = "status.json"
METRICS_FILE = "metrics.jsonl"
RESULT_FILE = "result.json"
CHECKPOINT_DIR = "checkpoints"
DIAGNOSTICS_DIR = "diagnostics"
WANDB_DIR = "wandb"
WANDB_RECORD = "wandb_run.json"  # the cell's W&B run: mode, id, project, group, name, dir, url
CELL_FILES = (RESULT_FILE, STATUS_FILE, CONFIG_FILE)

# The sweep axes of every grid, in cell-name order.
AXES = ("arch", "method", "ratio", "layer", "seed")
# How a cell's model came to be (the field's protocol): `base` = the unpruned model trained per
# arch × seed; `finetune` = trained from its base for the same steps as every other method (the
# unpruned control included); `zeroshot` = a training-free method evaluated on its base with no
# training; `scratch` = trained from random initialisation (grids without a protocol).
PROTOCOLS = ("base", "finetune", "zeroshot", "scratch")
# Every planned cell records its sweep axes plus its protocol and its variant (the name of a
# grid's config variant, "" for the grid's own cells).
CELL_AXES = (*AXES, "protocol", "variant")

# Keys that change where or how a cell runs, not what it computes: left out of the cell id, and
# allowed to differ between the seeds of one group.
RUNTIME_KEYS = (
    "data.data_root",
    "data.num_workers",
    "train.device",
    "train.num_threads",
    "train.log_every",
    "train.checkpoint_every",
    "train.parallel",  # DDP or FSDP compute the same model (up to float noise) ...
    "train.fsdp_cpu_offload",
    "train.activation_checkpointing",  # ... with or without recomputation
    "eval.max_bad_fraction",  # only flags a result (warnings), never changes it
    "logging.progress",
    "logging.wandb",
    "logging.project",
    "logging.entity",
    "logging.group",
    "logging.job_type",
    "logging.tags",
)


class ResultsError(ValueError):
    """A file of the results tree is unreadable or breaks the format; the message names it."""


# status.json states that are no cell states of their own; such a cell is incomplete: released
# without running (CellStatus.wait), or stopped by a signal, a time limit or a dead worker
# (CellStatus.interrupt), resumable from its checkpoint.
WAITING = "waiting"
INTERRUPTED = "interrupted"


class State:
    """The one set of cell states (plain strings, as status.json and the tables show them)."""

    NEW = "new"  # planned, never prepared (no config.yaml)
    PENDING = "pending"  # handed to a backend, its holder alive, not started
    RUNNING = "running"  # started, its holder alive
    DONE = "done"  # a valid result.json
    FAILED = "failed"  # the run recorded a failure
    INCOMPLETE = "incomplete"  # anything else with a frozen config: a re-launch resumes it


def is_cell_name(name: str) -> bool:
    """Cell folders are plain names; `_trash`, `_analysis`, `_submitit` and dot-files are not."""
    return bool(name) and not name.startswith(("_", "."))


def is_cell_dir(path: Path) -> bool:
    """A folder with a cell name holding at least one cell file."""
    return (
        path.is_dir() and is_cell_name(path.name) and any((path / f).is_file() for f in CELL_FILES)
    )


def cell_dirs(grid_dir: Path) -> list[Path]:
    """Every cell folder of a grid, sorted by name."""
    grid_dir = Path(grid_dir)
    return sorted(p for p in grid_dir.iterdir() if is_cell_dir(p)) if grid_dir.is_dir() else []


def list_grids(root: str | os.PathLike[str]) -> list[str]:
    """Grid folders under a results root: those with a plan.json or at least one cell folder."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(
        d.name
        for d in root.iterdir()
        if d.is_dir()
        and is_cell_name(d.name)
        and ((d / PLAN_FILE).is_file() or any(is_cell_dir(p) for p in d.iterdir()))
    )


# ---- small helpers -----------------------------------------------------------------------------


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def parse_iso(text: Any) -> float | None:
    """Seconds since the epoch of an ISO time (naive = UTC), None when absent or malformed."""
    if not isinstance(text, str) or not text:
        return None
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        return None
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).timestamp()


@functools.lru_cache(maxsize=8)
def git_commit(repo_dir: str | None = None) -> str:
    """`git rev-parse HEAD` of the repository holding this file (or `repo_dir`); "unknown" when
    git or the repository is unavailable (e.g. an installed wheel)."""
    where = repo_dir or str(Path(__file__).resolve().parent)
    try:
        out = subprocess.check_output(
            ["git", "rev-parse", "HEAD"], cwd=where, stderr=subprocess.DEVNULL, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = out.decode(errors="replace").strip()
    return commit or "unknown"


def _read_json_file(path: Path) -> Any:
    """Parsed JSON; ResultsError naming the file when it is unreadable or not JSON."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ResultsError(f"{path}: unreadable ({exc})") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ResultsError(f"{path}: not valid JSON ({exc})") from exc


# ---- status.json -------------------------------------------------------------------------------

MAX_ERROR_CHARS = 4000


def read_status(cell_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The parsed status.json, None when the cell has none; ResultsError when it is unreadable."""
    path = Path(cell_dir) / STATUS_FILE
    if not path.is_file():
        return None
    data = _read_json_file(path)
    if not isinstance(data, dict) or not isinstance(data.get("state"), str):
        raise ResultsError(f"{path}: not a status record (needs a 'state' string)")
    return data


class CellStatus:
    """Read-modify-write of `cell_dir/status.json`: pending → running → done | failed.

    Every transition rewrites the whole file atomically, so a reader never sees a torn one. The
    status says what a cell is doing; result.json (not the status) proves that it finished. An
    unreadable status.json is replaced by a fresh record (the launcher reports it before).
    """

    def __init__(self, cell_dir: str | os.PathLike[str]) -> None:
        self.cell_dir = Path(cell_dir)
        self.path = self.cell_dir / STATUS_FILE
        try:
            existing = read_status(self.cell_dir)
        except ResultsError:
            existing = None
        self.data: dict[str, Any] = existing if existing is not None else self._blank()

    @staticmethod
    def _blank() -> dict[str, Any]:
        t = now_iso()
        return {
            "state": State.PENDING,
            "attempts": 0,
            "host": "",
            "git_commit": "",
            "started": t,
            "updated": t,
            "finished": None,
            "error": None,
            "failed_step": None,
            "step": 0,
        }

    @property
    def state(self) -> str:
        return self.data["state"]

    @property
    def attempts(self) -> int:
        return int(self.data.get("attempts", 0))

    @property
    def git_commit(self) -> str:
        return self.data.get("git_commit") or "unknown"

    def _write(self) -> None:
        self.data["updated"] = now_iso()
        write_json_atomic(self.path, self.data)

    def pending(self) -> None:
        """Handed to a backend, not started (the launcher's call); keeps attempts and step."""
        self.data["state"] = State.PENDING
        self._write()

    def wait(self, reason: str) -> None:
        """Released by its launcher without running (e.g. its base is not done): not held, not
        failed; classify reports it incomplete with `reason`, and a re-launch runs it."""
        self.data.update(state=WAITING, error=reason)
        self._write()

    def interrupt(self, reason: str) -> None:
        """Stopped from outside (signal, time limit, killed worker), not failed: classify reports
        it incomplete with `reason`, and a plain re-launch resumes it from its checkpoint."""
        self.data.update(state=INTERRUPTED, error=reason, finished=None)
        self._write()

    def start(self, host: str | None = None, commit: str | None = None) -> None:
        """Begin an attempt: attempts + 1, state running, errors cleared, step kept (resume)."""
        self.data.update(
            state=State.RUNNING,
            attempts=self.attempts + 1,
            host=host or socket.gethostname(),
            git_commit=commit or git_commit(),
            started=now_iso(),
            finished=None,
            error=None,
            failed_step=None,
        )
        self._write()

    def update(self, step: int) -> None:
        """The heartbeat: the step reached (and, through `updated`, that the run is alive)."""
        self.data["step"] = int(step)
        self._write()

    def finish(self, step: int | None = None) -> None:
        if step is not None:
            self.data["step"] = int(step)
        self.data.update(state=State.DONE, finished=now_iso(), error=None, failed_step=None)
        self._write()

    def fail(self, reason: str | BaseException, step: int | None = None) -> None:
        """Record a failure; the message is truncated (its tail kept) to keep the file small."""
        text = f"{type(reason).__name__}: {reason}" if isinstance(reason, BaseException) else reason
        if len(text) > MAX_ERROR_CHARS:
            text = "…" + text[-MAX_ERROR_CHARS:]
        self.data.update(
            state=State.FAILED,
            error=text,
            failed_step=None if step is None else int(step),
            finished=None,
        )
        if step is not None:
            self.data["step"] = int(step)
        self._write()


# ---- result.json -------------------------------------------------------------------------------

# Top-level keys every result.json carries, with their JSON types.
RESULT_KEYS: dict[str, type] = {
    "cell_id": str,
    "grid": str,
    "name": str,
    "axes": dict,
    "config": dict,  # the flat resolved config, dotted keys
    "metrics": dict,
    "efficiency": dict,
    "hardware": dict,
    "timing": dict,
    "git_commit": str,
    "finished": str,  # ISO time
}
# Keys the metrics / efficiency blocks should carry (values may be null); a result without some of
# them is still done, and analysis reports it as partial.
EXPECTED_METRICS = ("accuracy", "chance", "train_loss", "eval_samples")
EXPECTED_EFFICIENCY = (
    "vision_tokens_llm",
    "vision_tokens_full",
    "kept_fraction",
    "total_gflops",
    "train_step_s",
    "peak_memory_mb",
)
# The optional `display` block: how tables and figures name and order a cell's method and arch
# (written by the cell from the extensions' own metadata). Field → allowed types; `key` required.
DISPLAY_FIELDS: dict[str, dict[str, tuple[type, ...]]] = {
    "method": {
        "key": (str,),
        "label": (str,),
        "short": (str,),
        "order": (int, float),
        "is_reference": (bool,),
        "uses_ground_truth": (bool,),
        "stage": (str,),
        "trained": (bool,),
    },
    "arch": {"key": (str,), "label": (str,), "short": (str,), "order": (int, float)},
}


def _type_problem(where: str, value: Any, types: tuple[type, ...]) -> str | None:
    if isinstance(value, types) and (bool in types or not isinstance(value, bool)):
        return None
    names = {str: "a string", dict: "an object", bool: "true or false", int: "a number"}
    wanted = " or ".join(dict.fromkeys(names.get(t, "a number") for t in types))
    return f"{where}={value!r:.60}: expected {wanted}"


def result_problems(result: Any) -> list[str]:
    """Every way `result` breaks the result.json schema (empty when it is valid)."""
    if not isinstance(result, dict):
        return [f"result={type(result).__name__}: expected a JSON object"]
    problems = []
    for key, kind in RESULT_KEYS.items():
        if key not in result:
            problems.append(f"{key}: missing")
        elif (problem := _type_problem(key, result[key], (kind,))) is not None:
            problems.append(problem)
    display = result.get("display")
    if display is None:
        return problems
    if not isinstance(display, dict):
        return [*problems, f"display={display!r:.60}: expected an object with method and arch"]
    for axis, fields in DISPLAY_FIELDS.items():
        block = display.get(axis)
        if not isinstance(block, dict):
            problems.append(f"display.{axis}={block!r}: expected an object with a key")
            continue
        if "key" not in block:
            problems.append(f"display.{axis}.key: missing")
        for name, types in fields.items():
            if block.get(name) is not None:
                problem = _type_problem(f"display.{axis}.{name}", block[name], types)
                if problem is not None:
                    problems.append(problem)
    return problems


def write_result(cell_dir: str | os.PathLike[str], result: Mapping[str, Any]) -> Path:
    """Validate `result` against the schema and write result.json atomically (the done marker:
    write it last). ResultsError lists every problem; nothing is written then."""
    problems = result_problems(dict(result))
    path = Path(cell_dir) / RESULT_FILE
    if problems:
        raise ResultsError(
            f"{path}: not written, the result breaks the schema: {'; '.join(problems)}. "
            "Fix: give every key of core.results.RESULT_KEYS with its type "
            "(docs/results_format.md)."
        )
    return write_json_atomic(path, result)


def check_result(cell_dir: str | os.PathLike[str]) -> tuple[dict[str, Any] | None, str | None]:
    """(result, None) when result.json is valid, (None, why) when it exists but is not, and
    (None, None) when there is none."""
    path = Path(cell_dir) / RESULT_FILE
    if not path.is_file():
        return None, None
    try:
        result = _read_json_file(path)
    except ResultsError as exc:
        return None, str(exc)
    problems = result_problems(result)
    if problems:
        return None, f"{path}: breaks the result schema ({'; '.join(problems[:4])})"
    return result, None


def read_result(cell_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The result, or None when result.json is absent, unreadable or invalid (= not done)."""
    return check_result(cell_dir)[0]


def is_done(cell_dir: str | os.PathLike[str]) -> bool:
    return read_result(cell_dir) is not None


# ---- config.yaml and plan.json -----------------------------------------------------------------

CELL_BLOCK = "cell"


def cell_block(
    cell_id: str, grid: str, name: str, axes: Mapping[str, Any], overrides: Mapping[str, Any]
) -> dict[str, Any]:
    """The `cell` block of config.yaml: identity, axes and the overrides applied to the base."""
    return {
        "cell_id": cell_id,
        "grid": grid,
        "name": name,
        "axes": dict(axes),
        "overrides": dict(overrides),
    }


def write_config(cell_dir: str | os.PathLike[str], frozen: Mapping[str, Any]) -> Path:
    """Freeze config.yaml: the resolved experiment sections plus the `cell` block."""
    path = Path(cell_dir) / CONFIG_FILE
    block = frozen.get(CELL_BLOCK)
    if not isinstance(block, Mapping) or set(block) != set(cell_block("", "", "", {}, {})):
        raise ResultsError(
            f"{path}: not written, the cell block is {block!r}. Fix: build it with "
            "core.results.cell_block."
        )
    return write_yaml_atomic(path, dict(frozen))


def read_cell_block(cell_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The `cell` block of config.yaml, {} when there is none or the file is unreadable."""
    path = Path(cell_dir) / CONFIG_FILE
    if not path.is_file():
        return {}
    try:
        cfg = read_yaml(path)
    except Exception:  # yaml.YAMLError, OSError, UnicodeDecodeError: a tolerant reader
        return {}
    block = cfg.get(CELL_BLOCK) if isinstance(cfg, dict) else None
    return block if isinstance(block, dict) else {}


def plan_entry(cell_id: str, name: str, axes: Mapping[str, Any]) -> dict[str, Any]:
    return {"cell_id": cell_id, "name": name, "axes": dict(axes)}


def write_plan(
    grid_dir: str | os.PathLike[str],
    grid: str,
    axes: Mapping[str, Iterable[Any]],
    entries: Iterable[Mapping[str, Any]],
) -> Path:
    """plan.json: the grid's axes and one `plan_entry` per planned cell."""
    plan = {
        "grid": grid,
        "created": now_iso(),
        "axes": {k: list(v) for k, v in axes.items()},
        "cells": [dict(e) for e in entries],
    }
    return write_json_atomic(Path(grid_dir) / PLAN_FILE, plan)


def read_plan(grid_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The parsed plan.json, None when absent; ResultsError naming the file when malformed."""
    path = Path(grid_dir) / PLAN_FILE
    if not path.is_file():
        return None
    plan = _read_json_file(path)
    cells = plan.get("cells") if isinstance(plan, dict) else None
    if not isinstance(cells, list) or not all(
        isinstance(c, dict) and isinstance(c.get("cell_id"), str) for c in cells
    ):
        raise ResultsError(f"{path}: not a plan (needs a list `cells` of entries with a cell_id)")
    return plan


# ---- locks: the grid lock and the cell claims (core.lease) --------------------------------------

# Every write into a grid happens under a lease: the grid lock (`_locks/grid.lock/`, held for the
# seconds a launcher plans, prepares cells and merges jobs.json) or the cell's claim
# (`_locks/<cell_id>.claim/`, held by the launcher that queued the cell and then by the worker that
# runs it, for as long as it runs). See docs/results_format.md.


def grid_lock_path(grid_dir: str | os.PathLike[str]) -> Path:
    return Path(grid_dir) / LOCKS_DIR / GRID_LOCK


def claim_path(cell_dir: str | os.PathLike[str]) -> Path:
    cell_dir = Path(cell_dir)
    return cell_dir.parent / LOCKS_DIR / f"{cell_dir.name}{CLAIM_SUFFIX}"


def claim_holders(cell_dir: str | os.PathLike[str]) -> list[Holder]:
    """The live holders of a cell's claim ([] when nobody holds it)."""
    return live_holders(claim_path(cell_dir))


_held_grid_locks: dict[Path, tuple[Lease, int]] = {}
_grid_locks_mutex = threading.Lock()


def _say_waiting(path: Path) -> Any:
    def waiting(holders: list[Holder]) -> None:
        who = "; ".join(h.describe() for h in holders)
        print(f"waiting for the grid lock {path} (held by {who})", flush=True)

    return waiting


@contextlib.contextmanager
def grid_lock(grid_dir: str | os.PathLike[str], lease_s: float = LEASE_S) -> Iterator[Lease]:
    """Hold the grid lock (re-entrant within a process); a holder that is dead, or silent for a
    whole lease, is taken over. A process that loses it stops at once (`exit_on_loss`)."""
    path = grid_lock_path(Path(grid_dir).resolve())
    with _grid_locks_mutex:
        held = _held_grid_locks.get(path)
        if held is not None:
            _held_grid_locks[path] = (held[0], held[1] + 1)
    if held is not None:
        try:
            yield held[0]
        finally:
            with _grid_locks_mutex:
                lease, depth = _held_grid_locks[path]
                _held_grid_locks[path] = (lease, depth - 1)
        return
    lease = Lease(path, role="launcher", lease_s=lease_s, on_lost=exit_on_loss)
    lease.acquire(waiting=_say_waiting(path))
    HEARTBEAT.add(lease)
    with _grid_locks_mutex:
        _held_grid_locks[path] = (lease, 1)
    try:
        yield lease
    finally:
        with _grid_locks_mutex:
            del _held_grid_locks[path]
        HEARTBEAT.remove(lease)
        lease.release()


# ---- jobs.json: who holds each cell ------------------------------------------------------------

# Backends whose job id names a process on the recorded host (`inline-<pid>`, or a local job's
# pid); any other backend's ids are scheduler ids (SLURM, array tasks as `<array>_<index>`).
PROCESS_BACKENDS = ("inline", "local")


def read_jobs(grid_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The job manifest ({"grid", "cells": {cell_id: entry}}); empty when absent."""
    grid_dir = Path(grid_dir)
    path = grid_dir / JOBS_FILE
    if not path.is_file():
        return {"grid": grid_dir.name, "cells": {}}
    fix = (
        " Fix: remove it (who holds a running cell is also in its claim under _locks/) or "
        "restore it."
    )
    try:
        data = _read_json_file(path)
    except ResultsError as exc:
        raise ResultsError(f"{exc}.{fix}") from exc
    if not isinstance(data, dict) or not isinstance(data.setdefault("cells", {}), dict):
        raise ResultsError(f"{path}: not a job manifest.{fix}")
    return data


def record_jobs(
    grid_dir: str | os.PathLike[str],
    backend: str,
    submitted: Mapping[str, str | None],
    lease_s: float = LEASE_S,
) -> dict[str, Any]:
    """Merge {cell_id: job id} into jobs.json (atomically, under the grid lock: concurrent
    launchers never lose each other's entries) and return the manifest.

    A job id of None records this launcher as the holder of a cell it has not submitted yet. Each
    entry keeps the backend, host and launcher pid, and the earlier jobs in `history`."""
    grid_dir = Path(grid_dir)
    with grid_lock(grid_dir, lease_s) as lock:
        manifest = _merge_jobs(read_jobs(grid_dir), backend, submitted)
        manifest["grid"] = grid_dir.name
        lock.ensure()
        write_json_atomic(grid_dir / JOBS_FILE, manifest)
    return manifest


def _merge_jobs(
    manifest: dict[str, Any], backend: str, submitted: Mapping[str, str | None]
) -> dict[str, Any]:
    stamp, host = now_iso(), socket.gethostname()
    for cell_id, job_id in submitted.items():
        entry = manifest["cells"].get(cell_id) or {"history": []}
        if entry.get("job_id"):
            entry.setdefault("history", []).append(
                {k: entry[k] for k in ("job_id", "backend", "submitted", "host") if k in entry}
            )
        entry.update(
            job_id=None if job_id is None else str(job_id),
            backend=backend,
            submitted=stamp,
            host=host,
            launcher_pid=os.getpid(),
        )
        manifest["cells"][cell_id] = entry
    manifest["updated"] = stamp
    return manifest


def uses_scheduler(manifest: Mapping[str, Any]) -> bool:
    """Whether any cell of the manifest ever went to a scheduler (then squeue is worth asking)."""
    return any(
        e.get("job_id") and e.get("backend") not in PROCESS_BACKENDS
        for entry in manifest.get("cells", {}).values()
        for e in (entry, *entry.get("history", []))
    )


# ---- cell states -------------------------------------------------------------------------------


# Display order of counts.
STATES = (State.NEW, State.DONE, State.RUNNING, State.FAILED, State.INCOMPLETE, State.PENDING)
# A pending/running status whose holder cannot be checked counts as alive while it was updated
# within this many seconds (the heartbeat); the launcher's `stale_min` sets it.
STALE_S = 1800.0


@dataclass(frozen=True)
class Liveness:
    """What is known, outside the cell folder, about who holds a cell (`classify`'s inputs).

    queued: job ids the scheduler lists (None: not asked or it did not answer); job_ids: the
    cell's scheduler job ids; pids: processes that hold it, on `host` (empty host: the status's);
    claims: the live holders of the cell's claim (`claim_holders`)."""

    queued: frozenset[str] | None = None
    job_ids: tuple[str, ...] = ()
    pids: tuple[int, ...] = ()
    host: str = ""
    claims: tuple[Holder, ...] = ()

    def alive(self, status_host: str = "") -> bool | None:
        """True/False when the holder can be checked, None when only the heartbeat can tell."""
        if self.claims:
            return True
        if self.queued is not None and self.job_ids:
            return bool(set(self.job_ids) & self.queued)
        if self.pids and (self.host or status_host) == socket.gethostname():
            return any(pid_alive(p) for p in self.pids)
        return None


def liveness(
    manifest: Mapping[str, Any],
    cell_id: str,
    queued: Iterable[str] | None = None,
    claims: Iterable[Holder] = (),
) -> Liveness:
    """The cell's liveness inputs from jobs.json plus, when given, the scheduler's queued ids and
    the live holders of its claim.

    A process backend's job is its pid; a cell recorded without a job id is held by the launcher
    that recorded it (its pid) until that launcher submits it."""
    entry = manifest.get("cells", {}).get(cell_id) or {}
    jobs = (*entry.get("history", []), entry)
    scheduled = tuple(
        str(j["job_id"])
        for j in jobs
        if j.get("job_id") and j.get("backend") not in PROCESS_BACKENDS
    )
    pids: tuple[int, ...] = ()
    job_id = entry.get("job_id")
    if job_id and entry.get("backend") in PROCESS_BACKENDS:
        tail = str(job_id).rsplit("-", 1)[-1]
        pids = (int(tail),) if tail.isdigit() else ()
    elif not job_id and isinstance(entry.get("launcher_pid"), int):
        pids = (entry["launcher_pid"],)
    return Liveness(
        queued=None if queued is None else frozenset(str(q) for q in queued),
        job_ids=scheduled,
        pids=pids,
        host=str(entry.get("host") or ""),
        claims=tuple(claims),
    )


@dataclass(frozen=True)
class CellState:
    """A cell's state, why (for anything not done), and what was read on the way."""

    state: str
    reason: str = ""
    status: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    problems: tuple[str, ...] = field(default=())  # unreadable or invalid files, named


def classify(
    cell_dir: str | os.PathLike[str],
    live: Liveness = Liveness(),
    stale_s: float = STALE_S,
    now: float | None = None,
) -> CellState:
    """The one state machine of a cell folder (launcher and analysis alike).

    done: a valid result.json. held (pending when status says pending, else running): a live
    holder has the cell's claim, whatever the folder says (it is being prepared or run right
    now). new: no config.yaml (never prepared). failed: status failed.
    running / pending: status running / pending and its holder alive: the scheduler lists its
    job, else its process (on this host) exists, else, when neither can be checked, the status
    was updated within `stale_s`. incomplete: everything else with a frozen config (killed,
    interrupted, preempted, stale, never started, or a result.json that is unreadable or breaks
    the schema): a re-launch resumes it.
    """
    cell_dir = Path(cell_dir)
    problems: list[str] = []
    try:
        status = read_status(cell_dir)
    except ResultsError as exc:
        status = None
        problems.append(str(exc))
    result, bad_result = check_result(cell_dir)
    if result is not None:
        return CellState(State.DONE, "", status, result, tuple(problems))
    if live.claims:
        queued = status is not None and status["state"] == State.PENDING
        who = "; ".join(h.describe(now) for h in live.claims)
        state = State.PENDING if queued else State.RUNNING
        why = f"{'queued' if queued else 'held'} by {who}"
        return CellState(state, why, status, None, tuple(problems))
    if bad_result is not None:
        problems.append(bad_result)
        return CellState(
            State.INCOMPLETE,
            f"{bad_result}; a re-launch runs it again",
            status,
            None,
            tuple(problems),
        )
    if not (cell_dir / CONFIG_FILE).is_file():
        why = "cell folder without config.yaml" if cell_dir.is_dir() else "no cell folder"
        return CellState(
            State.NEW, f"planned, {why} (never launched?)", status, None, tuple(problems)
        )
    if status is None:
        why = problems[0] if problems else "frozen config.yaml, never started (no status.json)"
        return CellState(State.INCOMPLETE, why, None, None, tuple(problems))
    state = status["state"]
    if state == State.FAILED:
        why = status.get("error") or "failed (status.json gives no reason)"
        return CellState(State.FAILED, str(why), status, None, tuple(problems))
    if state == WAITING:
        why = f"{status.get('error') or 'waiting'}; a re-launch runs it once that is resolved"
        return CellState(State.INCOMPLETE, why, status, None, tuple(problems))
    if state == INTERRUPTED:
        why = f"{status.get('error') or 'interrupted'}; a re-launch resumes it"
        return CellState(State.INCOMPLETE, why, status, None, tuple(problems))
    if state not in (State.RUNNING, State.PENDING):
        why = (
            "status says done but result.json is absent"
            if state == State.DONE
            else f"status.json has unknown state {state!r}"
        )
        return CellState(State.INCOMPLETE, why, status, None, tuple(problems))
    alive = live.alive(str(status.get("host") or ""))
    if alive is None:
        updated = parse_iso(status.get("updated") or status.get("started"))
        age = None if updated is None else (time.time() if now is None else now) - updated
        alive = age is not None and age < stale_s
        gone = (
            "no update time (stale)"
            if age is None
            else f"last update {age / 3600:.1f} h ago (stale: job dead? a re-launch resumes it)"
        )
    else:
        gone = "its job or process is gone (killed or preempted? a re-launch resumes it)"
    step = status.get("step")
    if alive:
        why = (
            f"running at step {step}"
            if state == State.RUNNING
            else "pending: submitted, not started"
        )
        return CellState(state, why, status, None, tuple(problems))
    return CellState(
        State.INCOMPLETE, f"{state} at step {step}; {gone}", status, None, tuple(problems)
    )


def classify_grid(
    grid_dir: str | os.PathLike[str],
    cell_ids: Iterable[str],
    queued: Iterable[str] | None = None,
    stale_s: float = STALE_S,
    manifest: Mapping[str, Any] | None = None,
) -> dict[str, CellState]:
    """`classify` of each cell of a grid, with liveness from its jobs.json (read once, unless
    given), the scheduler's `queued` ids and the cells' claims."""
    grid_dir = Path(grid_dir)
    jobs = read_jobs(grid_dir) if manifest is None else manifest
    queued = None if queued is None else frozenset(str(q) for q in queued)
    locks = grid_dir / LOCKS_DIR
    claimed = (
        {n[: -len(CLAIM_SUFFIX)] for n in os.listdir(locks) if n.endswith(CLAIM_SUFFIX)}
        if locks.is_dir()
        else set()
    )
    return {
        c: classify(
            grid_dir / c,
            liveness(jobs, c, queued, claim_holders(grid_dir / c) if c in claimed else ()),
            stale_s,
        )
        for c in cell_ids
    }


def count_states(states: Iterable[str]) -> dict[str, int]:
    """{state: count} over STATES in display order (zeros included)."""
    seen = Counter(states)
    return {s: seen.get(s, 0) for s in STATES}


def format_counts(counts: Mapping[str, int]) -> str:
    """`new=0  done=3  running=1 ...`: the one line launcher and status print."""
    return "  ".join(f"{state}={n}" for state, n in counts.items())
