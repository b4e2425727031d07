"""`action=status`: the state of every planned cell, from the results tree plus squeue."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from ablations.jobs import grid_live_jobs, local_pid, read_manifest, slurm_job_ids
from ablations.state import FAILED, RUNNING, STATES, classify


def grid_states(
    grid_dir: Path, live: set[str] | None = None, stale_s: float = 1800.0
) -> list[dict[str, Any]]:
    """One row per cell of the grid's plan.json: cell_id, name, state, step, attempts, job, error."""
    plan_path = grid_dir / "plan.json"
    if not plan_path.is_file():
        raise FileNotFoundError(
            f"{plan_path}: no plan for grid {grid_dir.name}. Fix: launch it first "
            f"(python ablations/launch.py grid={grid_dir.name}) or check results_root."
        )
    plan = json.loads(plan_path.read_text(encoding="utf-8"))
    manifest = read_manifest(grid_dir)
    rows = []
    for entry in plan.get("cells", []):
        cell_id = entry["cell_id"]
        state, status = classify(
            grid_dir / cell_id,
            live,
            slurm_job_ids(manifest, cell_id),
            stale_s,
            local_pid=local_pid(manifest, cell_id),
        )
        job = (manifest["cells"].get(cell_id) or {}).get("job_id")
        status = status or {}
        rows.append(
            {
                "cell_id": cell_id,
                "name": entry.get("name", ""),
                "state": state,
                "step": status.get("step"),
                "attempts": status.get("attempts"),
                "job_id": job,
                "error": status.get("error") if state == FAILED else None,
            }
        )
    return rows


def print_status(grid_dir: Path, stale_s: float = 1800.0) -> dict[str, int]:
    """Print counts and the not-done cells (failed ones with their reason); return the counts."""
    live = grid_live_jobs(grid_dir)
    rows = grid_states(grid_dir, live, stale_s)
    counts = Counter(r["state"] for r in rows)
    summary = {s: counts.get(s, 0) for s in STATES}
    jobs = "squeue" if live is not None else "liveness from process ids and status times"
    print(
        f"grid {grid_dir.name}: {len(rows)} cells  "
        + "  ".join(f"{k}={v}" for k, v in summary.items())
        + f"  ({jobs})"
    )
    for r in rows:
        if r["state"] == "done":
            continue
        extra = f"  error: {r['error']}" if r["error"] else ""
        where = f" job {r['job_id']}" if r["job_id"] and r["state"] == RUNNING else ""
        print(
            f"  {r['state']:<10} {r['cell_id']:<12} {r['name']:<28} step {r['step']}"
            f" attempts {r['attempts']}{where}{extra}"
        )
    return summary
