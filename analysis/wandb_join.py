"""Optional enrichment: W&B runs of a grid's group joined onto the results frame by `cell_id`.

The results tree is the source of truth; this only adds `wandb_*` columns (run id/name/state/url,
scalar summary values) when W&B is reachable. It talks to the public API only when online
(WANDB_API_KEY set and WANDB_MODE not offline/disabled), imports wandb lazily, and never fails the
analysis: anything unavailable comes back as an empty frame plus a reason.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from typing import Any

import pandas as pd

OFFLINE_MODES = ("offline", "disabled", "dryrun")


def wandb_online() -> tuple[bool, str]:
    """(online?, reason): online needs WANDB_API_KEY and a WANDB_MODE other than offline/disabled."""
    mode = os.environ.get("WANDB_MODE", "").strip().lower()
    if mode in OFFLINE_MODES:
        return False, f"WANDB_MODE={mode}"
    if not os.environ.get("WANDB_API_KEY"):
        return False, "WANDB_API_KEY is not set"
    return True, "online"


def run_cell_id(run: Any) -> str | None:
    """The cell id a run belongs to: config cell_id (flat or nested under `cell`), else summary."""
    config = dict(getattr(run, "config", {}) or {})
    cell = config.get("cell")
    for value in (
        config.get("cell_id"),
        config.get("cell.cell_id"),
        cell.get("cell_id") if isinstance(cell, dict) else None,
        _summary(run).get("cell_id"),
    ):
        if value:
            return str(value)
    return None


def run_to_row(run: Any) -> dict[str, Any] | None:
    """One row for a run: cell_id, wandb_id/name/group/state/url, and wandb_<summary key> for each
    scalar summary value (keys starting with '_' other than _runtime are W&B internals and skipped)."""
    cid = run_cell_id(run)
    if cid is None:
        return None
    row: dict[str, Any] = {
        "cell_id": cid,
        "wandb_id": getattr(run, "id", None),
        "wandb_name": getattr(run, "name", None),
        "wandb_group": getattr(run, "group", None),
        "wandb_state": getattr(run, "state", None),
        "wandb_url": getattr(run, "url", None),
    }
    for key, value in _summary(run).items():
        if key.startswith("_") and key != "_runtime":
            continue
        if isinstance(value, bool | int | float | str) and not (
            isinstance(value, float) and math.isnan(value)
        ):
            row["wandb_" + key.lstrip("_").replace("/", "_").replace(".", "_")] = value
    return row


def runs_to_frame(runs: Iterable[Any]) -> tuple[pd.DataFrame, list[str]]:
    """Rows keyed by cell_id (the last run wins when a cell has several) and notes on skipped runs."""
    rows: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    for run in runs:
        row = run_to_row(run)
        if row is None:
            notes.append(f"W&B run {getattr(run, 'name', '?')}: no cell_id in config; skipped")
            continue
        if row["cell_id"] in rows:
            notes.append(f"W&B: several runs for cell {row['cell_id']}; keeping the last listed")
        rows[row["cell_id"]] = row
    return pd.DataFrame(list(rows.values())), notes


def fetch_runs(path: str, grid: str, api: Any = None) -> tuple[pd.DataFrame, list[str]]:
    """Runs of group `grid` in `path` ("entity/project"); empty frame + reason when offline."""
    if api is None:
        online, reason = wandb_online()
        if not online:
            return pd.DataFrame(), [f"W&B join skipped: {reason}"]
        try:
            import wandb
        except ImportError:
            return pd.DataFrame(), ["W&B join skipped: wandb is not installed"]
        api = wandb.Api()
    try:
        runs = list(api.runs(path, filters={"group": grid}))
    except Exception as exc:  # network, auth or unknown-project errors must not stop the report
        return pd.DataFrame(), [f"W&B join skipped: could not list runs of {path} ({exc})"]
    return runs_to_frame(runs)


def join_wandb(cells: pd.DataFrame, runs: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Left-join W&B rows onto the cells frame by cell_id; notes name unmatched cells and runs."""
    if runs.empty:
        return cells.copy(), []
    joined = cells.merge(runs, on="cell_id", how="left")
    notes = []
    only_wandb = sorted(set(runs["cell_id"]) - set(cells["cell_id"]))
    if only_wandb:
        notes.append(f"W&B runs with no cell in the results tree: {', '.join(only_wandb)}")
    done = cells[cells["state"] == "done"]
    no_run = sorted(set(done["cell_id"]) - set(runs["cell_id"]))
    if no_run:
        notes.append(f"done cells with no W&B run: {', '.join(no_run)}")
    return joined, notes


def _summary(run: Any) -> dict[str, Any]:
    summary = getattr(run, "summary_metrics", None) or getattr(run, "summary", None) or {}
    try:
        return dict(summary)
    except (TypeError, ValueError):
        return {}
