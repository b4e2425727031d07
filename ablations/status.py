"""`action=status`: the state of every planned cell, from the results tree plus squeue."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ablations.jobs import grid_live_jobs
from core.results import (
    PLAN_FILE,
    STALE_S,
    State,
    classify_grid,
    count_states,
    format_counts,
    read_jobs,
    read_plan,
)

RETRY_HINT = "  (failed cells are skipped on re-launch; retry_failed=true runs them again)"


def grid_states(
    grid_dir: Path, live: set[str] | None = None, stale_s: float = STALE_S
) -> list[dict[str, Any]]:
    """One row per cell of the grid's plan.json: cell_id, name, state, step, attempts, job, error
    (the failure, or why a cell is incomplete)."""
    plan = read_plan(grid_dir)
    if plan is None:
        raise FileNotFoundError(
            f"{grid_dir / PLAN_FILE}: no plan for grid {grid_dir.name}. Fix: launch it "
            f"first (python ablations/launch.py grid={grid_dir.name}) or check results_root."
        )
    manifest = read_jobs(grid_dir)
    found = classify_grid(grid_dir, [c["cell_id"] for c in plan["cells"]], live, stale_s, manifest)
    rows = []
    for entry in plan["cells"]:
        cell_id = entry["cell_id"]
        cell = found[cell_id]
        status = cell.status or {}
        fine = cell.state in (State.DONE, State.RUNNING, State.PENDING)
        rows.append(
            {
                "cell_id": cell_id,
                "name": entry.get("name", ""),
                "state": cell.state,
                "step": status.get("step"),
                "attempts": status.get("attempts"),
                "job_id": (manifest["cells"].get(cell_id) or {}).get("job_id"),
                "error": None if fine else cell.reason,
            }
        )
    return rows


def print_status(grid_dir: Path, stale_s: float = STALE_S) -> dict[str, int]:
    """Print counts and the not-done cells (with the reason); return the counts."""
    live = grid_live_jobs(grid_dir)
    rows = grid_states(grid_dir, live, stale_s)
    counts = count_states(r["state"] for r in rows)
    jobs = "squeue" if live is not None else "liveness from process ids and status times"
    print(f"grid {grid_dir.name}: {len(rows)} cells  {format_counts(counts)}  ({jobs})")
    for r in rows:
        if r["state"] == State.DONE:
            continue
        extra = f"  error: {r['error']}" if r["error"] else ""
        where = (
            f" job {r['job_id']}"
            if r["job_id"] and r["state"] in (State.RUNNING, State.PENDING)
            else ""
        )
        print(
            f"  {r['state']:<10} {r['cell_id']:<12} {r['name']:<28} step {r['step']}"
            f" attempts {r['attempts']}{where}{extra}"
        )
    if any(r["state"] == State.FAILED for r in rows):
        print(RETRY_HINT)
    return counts


def summarize(grid_dir: Path, ran: set[str], stale_s: float = STALE_S) -> int:
    """Print the grid's counts and this run's cells that did not finish; how many there are."""
    rows = grid_states(grid_dir, grid_live_jobs(grid_dir), stale_s)
    print(f"grid {grid_dir.name}: {format_counts(count_states(r['state'] for r in rows))}")
    bad = [r for r in rows if r["cell_id"] in ran and r["state"] != State.DONE]
    for r in bad:
        print(f"  {r['state']}: {r['name']} ({r['cell_id']}): {r['error']}")
    if any(r["state"] == State.FAILED for r in bad):
        print(RETRY_HINT)
    if any(r["state"] == State.INCOMPLETE for r in bad):
        print("  (incomplete cells resume from their checkpoint on a plain re-launch)")
    return len(bad)
