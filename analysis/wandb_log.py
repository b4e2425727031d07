"""The grid's W&B dashboard: one run per grid (`job_type=analysis`, in the grid's group, beside its
cells' runs) holding the efficiency–accuracy table and every cell as W&B Tables, the figures as
images and the state counts as summary values.

Modes follow the cells' (`core.training.logger.resolve_wandb_mode`'s rule): WANDB_MODE in the
environment wins, except that `auto` logs only when the grid's cells logged to W&B (their
wandb_run.json records); then online with WANDB_API_KEY, else offline into `<out>/wandb`
(upload: `wandb sync <dir>`). W&B is imported only when a run is made.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.data import GridData
from analysis.html_report import figure_caption
from analysis.tables import efficiency_table
from core.io import write_json_atomic
from core.results import WANDB_RECORD

MODES = ("auto", "online", "offline", "disabled")
DEFAULT_PROJECT = "vidprune"  # core.config.train.LoggingConfig's default
# the per-cell columns of the "cells" table (those present)
CELL_COLUMNS = (
    "name",
    "cell_id",
    "state",
    "arch",
    "method",
    "protocol",
    "variant",
    "ratio",
    "layer",
    "seed",
    "accuracy",
    "speedup_train_measured",
    "total_gflops",
    "kept_fraction",
    "wandb_run_id",
)


def resolve_mode(requested: str, cells: pd.DataFrame, env: Mapping[str, str] | None = None) -> str:
    """online, offline or disabled for the analysis run (see the module docstring)."""
    if requested not in MODES:
        raise ValueError(
            f"wandb_log={requested!r}: unknown W&B mode. Fix: use one of {', '.join(MODES)}."
        )
    env = os.environ if env is None else env
    logged = set(cells["wandb_run_mode"].dropna()) if "wandb_run_mode" in cells else set()
    if requested == "auto" and not logged - {"disabled"}:
        return "disabled"  # the cells have no runs this one would sit beside
    forced = env.get("WANDB_MODE", "").strip().lower()
    if forced in ("online", "offline", "disabled"):
        return forced
    if requested != "auto":
        return requested
    return "online" if env.get("WANDB_API_KEY") else "offline"


def grid_project(cells: pd.DataFrame) -> tuple[str, str | None]:
    """The (project, entity) the grid's cells logged to: the most common project in their run
    records, else the default project; the entity is W&B's default."""
    projects = cells["wandb_run_project"].dropna() if "wandb_run_project" in cells else []
    return (str(pd.Series(projects).mode()[0]) if len(projects) else DEFAULT_PROJECT), None


def log_grid(
    data: GridData,
    out_dir: Path,
    figure_pngs: Mapping[str, Path],
    mode: str,
    *,
    project: str | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any] | None:
    """Log `data`'s analysis as one W&B run (mode online or offline) and write its record to
    `<out_dir>/wandb_run.json`; None (with a line on `log`) when W&B cannot start."""
    default_project, entity = grid_project(data.cells)
    project = project or default_project
    record: dict[str, Any] = {
        "mode": mode,
        "id": f"{data.grid}-analysis" if mode == "online" else "",
        "project": project,
        "group": data.grid,
        "name": f"{data.grid}/analysis",
        "job_type": "analysis",
        "dir": str(out_dir / "wandb"),
    }
    try:
        import wandb

        (out_dir / "wandb").mkdir(parents=True, exist_ok=True)
        run = wandb.init(
            project=project,
            entity=entity,
            group=data.grid,
            job_type="analysis",
            name=record["name"],
            id=record["id"] or None,
            dir=str(out_dir),
            mode=mode,
            resume="allow" if mode == "online" else None,
            reinit="finish_previous",
            config={"grid": data.grid, "results_root": str(data.root)},
            settings=wandb.Settings(silent=True, console="off"),
        )
    except Exception as exc:  # the report on disk matters more than its mirror
        log(f"[{data.grid}] W&B analysis run ({mode}) could not start: {exc!r}; files only")
        return None
    try:
        _send(wandb, run, data, figure_pngs)
    except Exception as exc:  # a mirror that failed half-way: say so, keep the files
        log(f"[{data.grid}] W&B analysis run ({mode}) failed while logging: {exc!r}; files only")
        run.finish(exit_code=1)
        return None
    record["id"] = run.id
    record["run_dir"] = str(getattr(getattr(run, "settings", None), "sync_dir", "") or "")
    record["url"] = str(getattr(run, "url", "") or "") if mode == "online" else ""
    run.finish()
    write_json_atomic(out_dir / WANDB_RECORD, record)
    where = record["url"] or f"{record['run_dir']} (upload: wandb sync {record['run_dir']})"
    log(f"[{data.grid}] W&B analysis run {where}")
    return record


def _send(wandb: Any, run: Any, data: GridData, figure_pngs: Mapping[str, Path]) -> None:
    """The efficiency–accuracy table, every cell, the figures and the state counts."""
    shown, _ = efficiency_table(data.agg)
    cells = data.cells[[c for c in CELL_COLUMNS if c in data.cells]]
    payload: dict[str, Any] = {
        "efficiency_accuracy": wandb.Table(dataframe=shown.astype(str)),
        "cells": wandb.Table(dataframe=_json_safe(cells)),
    }
    for name, png in figure_pngs.items():
        payload[f"figures/{name}"] = wandb.Image(str(png), caption=figure_caption(png) or png.stem)
    run.log(payload)
    run.summary.update(
        {f"cells/{k}": int(v) for k, v in data.cells["state"].value_counts().items()}
    )


def _json_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """Numbers stay numbers, NaN/NA become None, anything else text (a W&B Table's types)."""
    out = frame.copy()
    for col in out:
        if not pd.api.types.is_numeric_dtype(out[col]):
            out[col] = [None if pd.isna(v) else str(v) for v in out[col]]
    return out.astype(object).where(out.notna(), None)
