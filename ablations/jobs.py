"""The job manifest (`results/<grid>/jobs.json`) and job liveness from `squeue`.

The manifest maps each cell id to the job that last ran it (id, backend, submitted time) plus the
history of earlier submissions. Liveness comes from `squeue` only: without SLURM accounting sacct
answers nothing useful, and the results tree is the source of truth for everything else.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from ablations.state import now_iso
from core.io import write_json_atomic

MANIFEST = "jobs.json"


def read_manifest(grid_dir: Path) -> dict[str, Any]:
    path = grid_dir / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"grid": grid_dir.name, "cells": {}}
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc}). Fix: restore or remove it.") from exc
    data.setdefault("cells", {})
    return data


def record_jobs(grid_dir: Path, backend: str, submitted: dict[str, str]) -> dict[str, Any]:
    """Merge {cell_id: job_id} into the manifest (atomically) and return it."""
    manifest = read_manifest(grid_dir)
    stamp = now_iso()
    for cell_id, job_id in submitted.items():
        entry = manifest["cells"].get(cell_id) or {"history": []}
        if entry.get("job_id"):
            entry["history"].append(
                {k: entry[k] for k in ("job_id", "backend", "submitted") if k in entry}
            )
        entry.update(job_id=str(job_id), backend=backend, submitted=stamp)
        manifest["cells"][cell_id] = entry
    manifest["grid"] = grid_dir.name
    manifest["updated"] = stamp
    write_json_atomic(grid_dir / MANIFEST, manifest)
    return manifest


def slurm_job_ids(manifest: dict[str, Any], cell_id: str) -> list[str]:
    """SLURM job ids ever used for a cell (other backends' ids are process ids, not queue ids)."""
    entry = manifest.get("cells", {}).get(cell_id) or {}
    ids = [h.get("job_id") for h in entry.get("history", []) if h.get("backend") == "slurm"]
    if entry.get("backend") == "slurm":
        ids.append(entry.get("job_id"))
    return [str(i) for i in ids if i]


def local_pid(manifest: dict[str, Any], cell_id: str) -> int | None:
    """Process id behind the cell's last inline/local run (`inline-<pid>` or the job's pid)."""
    entry = manifest.get("cells", {}).get(cell_id) or {}
    if entry.get("backend") not in ("inline", "local"):
        return None
    tail = str(entry.get("job_id", "")).rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else None


def grid_live_jobs(grid_dir: Path) -> set[str] | None:
    """`live_jobs()` when the grid has ever used SLURM, else None without calling squeue (which
    hangs ~10 s where slurm-client is installed but no controller answers)."""
    cells = read_manifest(grid_dir)["cells"].values()
    used = any(
        e.get("backend") == "slurm"
        or any(h.get("backend") == "slurm" for h in e.get("history", []))
        for e in cells
    )
    return live_jobs() if used else None


def live_jobs(timeout_s: float = 10.0) -> set[str] | None:
    """Ids of queued/running jobs (array tasks as `<array>_<index>`), or None if squeue fails."""
    if shutil.which("squeue") is None:
        return None
    try:
        proc = subprocess.run(
            ["squeue", "--noheader", "--array", "--format=%i|%A"],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    ids: set[str] = set()
    for line in proc.stdout.splitlines():
        for part in line.strip().split("|"):
            if part:
                ids.add(part)
    return ids


def sinfo_answers(timeout_s: float = 5.0) -> bool:
    """True when a SLURM controller answers `sinfo` within `timeout_s` (not merely on PATH)."""
    if shutil.which("sinfo") is None:
        return False
    try:
        proc = subprocess.run(
            ["sinfo", "--noheader", "--format=%P"],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0
