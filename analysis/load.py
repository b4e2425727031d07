"""Results tree → one pandas row per planned cell, plus a `LoadReport` of everything not done.

A cell is known from `plan.json` and from its folder; the union is loaded so that a planned cell
with no folder shows up as "new" and a folder the plan no longer lists is kept (and reported). Each
cell's state is `core.results.classify`, the launcher's own rule. Cells that are not done keep NaN
metrics and their state/reason: nothing is dropped silently. The format: docs/results_format.md.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.display import display_columns, resolve_display
from core.results import (
    AXES,
    CELL_AXES,
    EXPECTED_EFFICIENCY,
    EXPECTED_METRICS,
    METRICS_FILE,
    PLAN_FILE,
    RUNTIME_KEYS,
    STALE_S,
    STATES,
    WANDB_RECORD,
    ResultsError,
    State,
    cell_dirs,
    classify_grid,
    count_states,
    list_grids,
    read_cell_block,
    read_jobs,
    read_plan,
)

BASE_COLUMNS = (
    "grid",
    "cell_id",
    "name",
    *CELL_AXES,
    "state",
    "error",
    "failed_step",
    "attempts",
    "step",
    "updated",
    "in_plan",
    "cell_dir",
)


@dataclass
class CellNote:
    """A cell that is not done (or done with a problem), for the report."""

    grid: str
    cell_id: str
    name: str
    state: str
    reason: str


@dataclass
class LoadReport:
    """Counts per grid and state, notes on cells that are not plainly done, general messages."""

    root: Path
    grids: list[str] = field(default_factory=list)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    notes: list[CellNote] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)

    def total(self, state: str | None = None) -> int:
        """Number of cells over all grids, optionally of one state."""
        return sum(n for per in self.counts.values() for s, n in per.items() if state in (None, s))

    @property
    def empty(self) -> bool:
        return self.total() == 0

    def format(self) -> str:
        """Human-readable text printed by the CLIs and embedded in the HTML report."""
        lines = [f"results root: {self.root}"]
        if not self.grids:
            lines.append("no grids loaded")
        for grid in self.grids:
            per = self.counts.get(grid, {})
            parts = ", ".join(f"{per[s]} {s}" for s in STATES if per.get(s))
            lines.append(f"grid {grid}: {sum(per.values())} cells ({parts or 'none'})")
        if self.notes:
            lines.append("cells not done or with problems:")
            for n in self.notes:
                lines.append(f"  [{n.state}] {n.grid}/{n.cell_id} {n.name}: {n.reason}")
        if self.messages:
            lines.append("messages:")
            lines.extend(f"  {m}" for m in self.messages)
        return "\n".join(lines)


def load_results(
    root: str | Path,
    grids: str | list[str] | tuple[str, ...] | None = None,
    stale_s: float = STALE_S,
) -> tuple[pd.DataFrame, LoadReport]:
    """Load one grid, several grids, or (grids=None) every grid under `root`; `stale_s` is the
    heartbeat of running cells whose job cannot be checked (as the launcher's `stale_min`)."""
    root = Path(root)
    report = LoadReport(root=root)
    if not root.is_dir():
        report.messages.append(
            f"results root {root} does not exist; run the launcher first or pass --results DIR"
        )
        return _frame([]), report
    available = list_grids(root)
    if grids is None:
        wanted = available
        if not wanted:
            report.messages.append(f"no grids under {root} (empty results tree)")
    else:
        wanted = [grids] if isinstance(grids, str) else list(grids)
    rows: list[dict[str, Any]] = []
    for grid in wanted:
        if grid not in available:
            report.messages.append(
                f"grid {grid!r} not found under {root}; available: {', '.join(available) or 'none'}"
            )
            continue
        report.grids.append(grid)
        grid_rows = _load_grid(root / grid, report, stale_s)
        counts = count_states(r["state"] for r in grid_rows)
        report.counts[grid] = {state: n for state, n in counts.items() if n}
        rows.extend(grid_rows)
    if len(report.grids) > 1:
        report.messages.append(
            f"{len(report.grids)} grids loaded together ({', '.join(report.grids)}); "
            "aggregation keeps them apart by the `grid` column"
        )
    return resolve_display(_frame(rows), report.messages), report


def load_history(root: str | Path, grid: str) -> pd.DataFrame:
    """metrics.jsonl of every cell of a grid as one long frame (cell_id, step, phase, metrics...)."""
    rows = []
    for cell_dir in cell_dirs(Path(root) / grid):
        path = cell_dir / METRICS_FILE
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn last line of a running cell
            if isinstance(rec, dict):
                rows.append({"cell_id": cell_dir.name, **rec})
    return pd.DataFrame(rows)


# ---- one grid ----------------------------------------------------------------------------------


def _load_grid(grid_dir: Path, report: LoadReport, stale_s: float) -> list[dict[str, Any]]:
    grid = grid_dir.name
    plan = _read_plan(grid_dir, report)
    planned = {c["cell_id"]: c for c in plan}
    try:
        manifest = read_jobs(grid_dir)
    except ResultsError as exc:
        report.messages.append(f"{exc}; liveness from status times only")
        manifest = {"cells": {}}
    found_dirs = {p.name for p in cell_dirs(grid_dir)}
    cell_ids = [*planned, *sorted(found_dirs - set(planned))]
    states = classify_grid(grid_dir, cell_ids, None, stale_s, manifest)
    rows = []
    for cell_id in cell_ids:
        row = _empty_row(grid, cell_id, planned.get(cell_id, {}))
        row["in_plan"] = cell_id in planned
        cell_dir = grid_dir / cell_id
        cell = states[cell_id]
        row["state"] = cell.state
        row["error"] = None if cell.state == State.DONE else cell.reason
        report.messages.extend(f"{grid}/{cell_id}: {problem}" for problem in cell.problems)
        if cell_dir.is_dir():
            _fill_from_dir(row, cell_dir, cell.status or {})
        if cell.result is not None:
            _fill_from_result(row, cell.result, report)
        if not row["in_plan"] and plan:
            report.messages.append(
                f"{grid}/{cell_id} ({row['name']}): folder not in plan.json (from an earlier "
                "plan?); loaded with its own axes"
            )
        if row["state"] != State.DONE:
            report.notes.append(
                CellNote(grid, cell_id, str(row["name"]), row["state"], str(row["error"] or ""))
            )
        rows.append(row)
    _check_group_configs(grid, rows, report)
    for row in rows:
        row.pop("_config", None)
    if not rows:
        report.messages.append(f"grid {grid}: no cells planned or found")
    return rows


def _read_plan(grid_dir: Path, report: LoadReport) -> list[dict[str, Any]]:
    try:
        plan = read_plan(grid_dir)
    except ResultsError as exc:
        report.messages.append(f"{exc}; using cell folders only")
        return []
    if plan is None:
        report.messages.append(f"{grid_dir / PLAN_FILE}: no plan.json; new cells cannot be seen")
        return []
    if plan.get("grid") not in (None, grid_dir.name):
        report.messages.append(
            f"{grid_dir / PLAN_FILE}: plan says grid {plan.get('grid')!r} but lives in folder "
            f"{grid_dir.name!r}"
        )
    return plan["cells"]


def _empty_row(grid: str, cell_id: str, entry: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(BASE_COLUMNS)
    row.update(grid=grid, cell_id=cell_id, name=entry.get("name", cell_id), _config={})
    _set_axes(row, entry.get("axes") or {})
    return row


def _fill_from_dir(row: dict[str, Any], cell_dir: Path, status: dict[str, Any]) -> None:
    row["cell_dir"] = str(cell_dir)
    for key in ("failed_step", "attempts", "step", "updated"):
        row[key] = status.get(key)
    row.update(wandb_record(cell_dir))
    if any(row[a] is None for a in AXES) or row["name"] == row["cell_id"]:
        cell = read_cell_block(cell_dir)
        _set_axes(row, cell.get("axes") or {})
        if row["name"] == row["cell_id"] and cell.get("name"):
            row["name"] = str(cell["name"])


WANDB_COLUMNS = {f"wandb_run_{k}": k for k in ("mode", "id", "project", "group", "url", "dir")}


def wandb_record(cell_dir: Path) -> dict[str, Any]:
    """The cell's W&B run record (wandb_run.json, written by the run logger) as wandb_run_*
    columns: mode, id, project, group, url (online runs), dir; {} when absent or unreadable."""
    path = cell_dir / WANDB_RECORD
    try:
        record = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        return {}
    if not isinstance(record, dict):
        return {}
    return {col: record.get(key) or None for col, key in WANDB_COLUMNS.items()}


def _fill_from_result(row: dict[str, Any], result: dict[str, Any], report: LoadReport) -> None:
    tag = f"{row['grid']}/{row['cell_id']}"
    if result.get("grid") not in (None, row["grid"]):
        report.messages.append(
            f"{tag}: result.json says grid {result['grid']!r} (mixed grids: a cell copied from "
            "another grid?); kept under the folder's grid"
        )
    axes = result.get("axes") or {}
    planned = {a: row[a] for a in AXES if row[a] is not None}
    _set_axes(row, axes, overwrite=True)
    changed = [a for a, v in planned.items() if a in axes and not _same(v, row[a])]
    if changed:
        report.messages.append(
            f"{tag}: axes in result.json differ from plan.json for {', '.join(changed)} "
            f"(plan {[planned[a] for a in changed]}, result {[row[a] for a in changed]}); "
            "using result.json"
        )
    row["name"] = result.get("name") or row["name"]
    row["_config"] = result.get("config") or {}
    row.update(display_columns(result.get("display")))
    for section in ("metrics", "efficiency", "hardware", "timing"):
        values = result.get(section)
        if not isinstance(values, dict):
            report.messages.append(f"{tag}: result.json has no {section!r} block")
            continue
        row.update(_flatten_section(values))
    for key in ("git_commit", "finished"):
        if key in result:
            row[key] = result[key]
    absent = [k for k in (*EXPECTED_METRICS, *EXPECTED_EFFICIENCY) if row.get(k) is None]
    if absent:
        report.messages.append(f"{tag}: partial result.json, no {', '.join(absent)} (left NaN)")


def _flatten_section(values: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key == "accuracy_by_type" and isinstance(value, dict):
            out.update({f"acc_{clean_name(k)}": v for k, v in value.items()})
        elif key == "count_by_type" and isinstance(value, dict):
            out.update({f"count_{clean_name(k)}": v for k, v in value.items()})
        elif isinstance(value, dict):
            out.update({f"{clean_name(key)}_{clean_name(k)}": v for k, v in value.items()})
        elif not isinstance(value, list):
            out[clean_name(key)] = value
    return out


def clean_name(name: str) -> str:
    """A column-safe version of a metric or question-type name: lower case, [a-z0-9_]."""
    return re.sub(r"[^0-9a-z]+", "_", str(name).lower()).strip("_") or "unnamed"


def _set_axes(row: dict[str, Any], axes: dict[str, Any], overwrite: bool = False) -> None:
    casts = {
        "ratio": float,
        "layer": int,
        "seed": int,
        "arch": str,
        "method": str,
        "protocol": str,
        "variant": str,
    }
    for axis, cast in casts.items():
        if axis in axes and axes[axis] is not None and (overwrite or row.get(axis) is None):
            try:
                row[axis] = cast(axes[axis])
            except (TypeError, ValueError):
                row[axis] = axes[axis]


def _check_group_configs(grid: str, rows: list[dict[str, Any]], report: LoadReport) -> None:
    """Seeds of one (arch, method, ratio, layer) must share every non-seed, non-runtime key."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        if row["state"] == "done" and row["_config"]:
            key = (*(row[a] for a in AXES if a != "seed"), row["protocol"], row["variant"])
            groups.setdefault(key, []).append(row)
    for key, members in groups.items():
        if len(members) < 2:
            continue
        keys = set().union(*(m["_config"] for m in members))
        differing = sorted(
            k
            for k in keys
            if "seed" not in k
            and k not in RUNTIME_KEYS
            and k != "train.init_cell"  # each seed starts from its own base
            and not k.startswith("cell.")
            and len({json.dumps(m["_config"].get(k), sort_keys=True, default=str) for m in members})
            > 1
        )
        if differing:
            label = "/".join(str(v) for v in key)
            report.messages.append(
                f"grid {grid}, group {label}: seeds differ in config {', '.join(differing[:5])}"
                f"{' …' if len(differing) > 5 else ''} (mixed settings averaged together; "
                "see the `flag` column)"
            )
            for m in members:
                m["config_mismatch"] = ",".join(differing)


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    for row in rows:  # results of grids without a protocol: every cell trained from scratch
        row["protocol"] = row.get("protocol") or "scratch"
        row["variant"] = row.get("variant") or ""
    df = pd.DataFrame(rows)
    for col in (*BASE_COLUMNS, "config_mismatch"):
        if col not in df.columns:
            df[col] = pd.Series(dtype=object)
    front = [c for c in BASE_COLUMNS if c in df.columns]
    df = df[front + [c for c in df.columns if c not in front]]
    for col in ("ratio",):
        df[col] = pd.to_numeric(df[col], errors="coerce")
    for col in ("layer", "seed", "failed_step", "attempts", "step"):
        values = pd.to_numeric(df[col], errors="coerce")
        whole = values.dropna()
        df[col] = values.astype("Int64") if (whole == whole.round()).all() else values
    return df.reset_index(drop=True)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        try:
            return math.isclose(float(a), float(b), abs_tol=1e-9)
        except (TypeError, ValueError):
            return False
    return a == b
