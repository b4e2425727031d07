"""Results tree → one pandas row per planned cell, plus a `LoadReport` of everything not done.

A cell is known from `plan.json` and from its folder; the union is loaded so that a planned cell with
no folder shows up as "missing" and a folder the plan no longer lists is kept (and reported). Cells
that are not done keep NaN metrics and their state/reason: nothing is dropped silently.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

AXES = ("arch", "method", "ratio", "layer", "seed")
STATES = ("done", "failed", "running", "pending", "incomplete", "missing")
CELL_FILES = ("result.json", "status.json", "config.yaml")

# Fields result.json must carry (results_format.md); absent ones are reported as a partial result.
REQUIRED_METRICS = ("accuracy", "chance", "train_loss", "eval_samples")
REQUIRED_EFFICIENCY = (
    "vision_tokens_llm",
    "vision_tokens_full",
    "kept_fraction",
    "total_gflops",
    "train_step_s",
    "peak_memory_mb",
)

# Config keys allowed to differ between the seeds of one group: seeds themselves and where/how a
# cell ran (a copy of core.config.experiment.RUNTIME_KEYS: analysis must run without core or torch;
# tests/test_analysis_report.py enforces that).
RUNTIME_KEYS = frozenset(
    {
        "data.data_root",
        "data.num_workers",
        "train.device",
        "train.num_threads",
        "train.log_every",
        "train.checkpoint_every",
        "logging.wandb",
        "logging.project",
        "logging.entity",
        "logging.group",
        "logging.job_type",
        "logging.tags",
    }
)

STALE_RUNNING_H = 6.0

BASE_COLUMNS = (
    "grid",
    "cell_id",
    "name",
    *AXES,
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


def list_grids(root: str | Path) -> list[str]:
    """Grid folders under a results root: those with a plan.json or at least one cell folder."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(
        d.name
        for d in root.iterdir()
        if d.is_dir() and not d.name.startswith(("_", ".")) and _looks_like_grid(d)
    )


def load_results(
    root: str | Path, grids: str | list[str] | tuple[str, ...] | None = None
) -> tuple[pd.DataFrame, LoadReport]:
    """Load one grid, several grids, or (grids=None) every grid under `root`."""
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
        grid_rows = _load_grid(root / grid, report)
        report.counts[grid] = dict(Counter(r["state"] for r in grid_rows))
        rows.extend(grid_rows)
    if len(report.grids) > 1:
        report.messages.append(
            f"{len(report.grids)} grids loaded together ({', '.join(report.grids)}); "
            "aggregation keeps them apart by the `grid` column"
        )
    return _frame(rows), report


def load_history(root: str | Path, grid: str) -> pd.DataFrame:
    """metrics.jsonl of every cell of a grid as one long frame (cell_id, step, phase, metrics...)."""
    rows = []
    for cell_dir in sorted(p for p in (Path(root) / grid).iterdir() if _is_cell_dir(p)):
        path = cell_dir / "metrics.jsonl"
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


def _load_grid(grid_dir: Path, report: LoadReport) -> list[dict[str, Any]]:
    grid = grid_dir.name
    plan = _read_plan(grid_dir, report)
    planned = {c["cell_id"]: c for c in plan}
    dirs = {
        p.name: p
        for p in grid_dir.iterdir()
        if _is_cell_dir(p) or (p.is_dir() and p.name in planned)
    }
    rows = []
    for cell_id in [*planned, *sorted(set(dirs) - set(planned))]:
        entry = planned.get(cell_id, {})
        row = _empty_row(grid, cell_id, entry)
        row["in_plan"] = cell_id in planned
        if cell_id in dirs:
            _fill_from_dir(row, dirs[cell_id], report)
            if not row["in_plan"] and plan:
                report.messages.append(
                    f"{grid}/{cell_id} ({row['name']}): folder not in plan.json (from an earlier "
                    "plan?); loaded with its own axes"
                )
        else:
            row["state"] = "missing"
            row["error"] = "planned but no cell folder (never launched or folder removed)"
        if row["state"] != "done":
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
    path = grid_dir / "plan.json"
    if not path.is_file():
        report.messages.append(f"{path}: no plan.json; missing cells cannot be detected")
        return []
    try:
        plan = json.loads(path.read_text())
        cells = plan["cells"]
        if not all(isinstance(c, dict) and "cell_id" in c for c in cells):
            raise ValueError("every entry of cells needs a cell_id")
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        report.messages.append(f"{path}: unreadable plan ({exc}); using cell folders only")
        return []
    if plan.get("grid") not in (None, grid_dir.name):
        report.messages.append(
            f"{path}: plan says grid {plan.get('grid')!r} but lives in folder {grid_dir.name!r}"
        )
    return cells


def _empty_row(grid: str, cell_id: str, entry: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(BASE_COLUMNS)
    row.update(grid=grid, cell_id=cell_id, name=entry.get("name", cell_id), _config={})
    _set_axes(row, entry.get("axes") or {})
    return row


def _fill_from_dir(row: dict[str, Any], cell_dir: Path, report: LoadReport) -> None:
    row["cell_dir"] = str(cell_dir)
    tag = f"{row['grid']}/{row['cell_id']}"
    status = _read_json(cell_dir / "status.json", report, tag) or {}
    for key in ("error", "failed_step", "attempts", "step", "updated"):
        row[key] = status.get(key)
    if any(row[a] is None for a in AXES) or row["name"] == row["cell_id"]:
        cell = _cell_block(cell_dir)
        _set_axes(row, cell.get("axes") or {})
        if row["name"] == row["cell_id"] and cell.get("name"):
            row["name"] = str(cell["name"])
    result_path = cell_dir / "result.json"
    if result_path.is_file():
        result = _read_json(result_path, report, tag)
        if isinstance(result, dict):
            _fill_from_result(row, result, report)
            row["state"] = "done"
            return
        row["state"] = "incomplete"
        row["error"] = "result.json exists but is unreadable (see messages)"
        return
    state = status.get("state")
    if state in ("failed", "running", "pending"):
        row["state"] = state
        if state == "failed" and not row["error"]:
            row["error"] = "failed (status.json gives no reason)"
        if state == "running":
            row["error"] = _running_note(status)
        if state == "pending":
            row["error"] = "pending: submitted, not started yet"
    else:
        row["state"] = "incomplete"
        row["error"] = (
            "status says done but result.json is absent"
            if state == "done"
            else "cell folder without status.json or result.json (never started?)"
        )


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
    for section in ("metrics", "efficiency", "hardware", "timing"):
        values = result.get(section)
        if not isinstance(values, dict):
            report.messages.append(f"{tag}: result.json has no {section!r} block")
            continue
        row.update(_flatten_section(values))
    for key in ("git_commit", "finished"):
        if key in result:
            row[key] = result[key]
    absent = [k for k in (*REQUIRED_METRICS, *REQUIRED_EFFICIENCY) if row.get(k) is None]
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
    casts = {"ratio": float, "layer": int, "seed": int, "arch": str, "method": str}
    for axis, cast in casts.items():
        if axis in axes and axes[axis] is not None and (overwrite or row.get(axis) is None):
            try:
                row[axis] = cast(axes[axis])
            except (TypeError, ValueError):
                row[axis] = axes[axis]


def _cell_block(cell_dir: Path) -> dict[str, Any]:
    """The `cell` block of config.yaml ({cell_id, grid, name, axes, overrides}), or {}."""
    path = cell_dir / "config.yaml"
    if not path.is_file():
        return {}
    import yaml

    try:
        cfg = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError:
        return {}
    cell = cfg.get("cell") if isinstance(cfg, dict) else None
    return cell if isinstance(cell, dict) else {}


def _read_json(path: Path, report: LoadReport, tag: str) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        report.messages.append(f"{tag}: {path.name} is not valid JSON ({exc})")
        return None


def _running_note(status: dict[str, Any]) -> str:
    note = f"running at step {status.get('step', '?')}"
    try:
        updated = datetime.fromisoformat(str(status["updated"]))
    except (KeyError, ValueError):
        return note
    if updated.tzinfo is None:
        updated = updated.replace(tzinfo=UTC)
    hours = (datetime.now(UTC) - updated).total_seconds() / 3600
    if hours > STALE_RUNNING_H:
        note += f"; last update {hours:.1f} h ago (stale: job dead? re-launch to resume)"
    return note


def _check_group_configs(grid: str, rows: list[dict[str, Any]], report: LoadReport) -> None:
    """Seeds of one (arch, method, ratio, layer) must share every non-seed, non-runtime key."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        if row["state"] == "done" and row["_config"]:
            groups.setdefault(tuple(row[a] for a in AXES[:-1]), []).append(row)
    for key, members in groups.items():
        if len(members) < 2:
            continue
        keys = set().union(*(m["_config"] for m in members))
        differing = sorted(
            k
            for k in keys
            if "seed" not in k
            and k not in RUNTIME_KEYS
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


def _is_cell_dir(path: Path) -> bool:
    return (
        path.is_dir()
        and not path.name.startswith(("_", "."))
        and any((path / f).is_file() for f in CELL_FILES)
    )


def _looks_like_grid(path: Path) -> bool:
    return (path / "plan.json").is_file() or any(_is_cell_dir(p) for p in path.iterdir())
