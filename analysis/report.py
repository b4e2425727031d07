"""Everything for one grid in one call: tables (CSV/Markdown/LaTeX), the load report, a per-cell
CSV, figures when a figure maker is given (PDF/PNG), and a single self-contained HTML report
(figures embedded as base64 PNG).

Figures belong to paper_figures, which depends on analysis and never the reverse: the report
receives them as a `FigureMaker` (paper_figures.report passes its figure registry).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from analysis.data import GridData
from analysis.html_report import render_html
from analysis.load import LoadReport, load_results
from analysis.tables import write_tables
from analysis.wandb_log import log_grid, resolve_mode
from core.results import ANALYSIS_DIR, WANDB_RECORD, list_grids


@dataclass
class FigureOutcome:
    """What a figure maker did: files per figure made, the reason per figure skipped."""

    made: dict[str, list[Path]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


# (grid data, output folder, log, *, titles=True) → outcome
FigureMaker = Callable[..., FigureOutcome]


def default_out_dir(results_root: str | Path, grid: str) -> Path:
    """<results>/<grid>/_analysis: next to the cells; the leading '_' marks it as not a cell."""
    return Path(results_root) / grid / ANALYSIS_DIR


def write_grid_outputs(
    results_root: str | Path,
    grid: str,
    out_dir: str | Path | None = None,
    *,
    figures: FigureMaker | None = None,
    wandb_path: str | None = None,
    wandb_log: str = "disabled",
    log: Callable[[str], None] = print,
) -> dict[str, Path]:
    """Write all outputs of `grid` into out_dir (default: default_out_dir) and return name → path
    (keys like 'efficiency_md', 'figure_accuracy_vs_ratio_png', 'cells_csv', 'load_report', 'html').
    `wandb_log` (auto, online, offline, disabled: analysis.wandb_log.resolve_mode) also logs the
    table and figures as the grid's W&B analysis run ('wandb_record' names its record).
    Raises FileNotFoundError naming the available grids when the grid does not exist."""
    root = Path(results_root)
    available = list_grids(root)
    if grid not in available:
        raise FileNotFoundError(
            f"grid {grid!r} not found under results root {root} (available: "
            f"{', '.join(available) or 'none'}). Fix: pass --results/--grid of a launched grid."
        )
    out = Path(out_dir) if out_dir is not None else default_out_dir(root, grid)
    out.mkdir(parents=True, exist_ok=True)
    cells, report = load_results(root, grid)
    if wandb_path:
        cells = _join_wandb(cells, report, wandb_path, grid)
    mode = resolve_mode(wandb_log, cells)
    data = GridData.from_cells(root, grid, cells, report.messages)

    paths = write_tables(data.agg, out / "tables", title=grid)
    paths["cells_csv"] = out / "tables" / "cells.csv"
    data.cells.to_csv(paths["cells_csv"], index=False)
    paths["load_report"] = out / "load_report.txt"
    paths["load_report"].write_text(report.format() + "\n")

    figure_pngs: dict[str, Path] = {}
    skipped: dict[str, str] = {}
    if figures is not None:
        outcome = figures(data, out / "figures", log)
        skipped = outcome.skipped
        for name, files in outcome.made.items():
            for f in files:
                paths[f"figure_{name}_{f.suffix.lstrip('.')}"] = f
                if f.suffix == ".png":
                    figure_pngs[name] = f
    paths["html"] = out / "report.html"
    paths["html"].write_text(
        render_html(data, report, out, figure_pngs, skipped, figures is not None)
    )
    if mode != "disabled" and log_grid(data, out, figure_pngs, mode, log=log) is not None:
        paths["wandb_record"] = out / WANDB_RECORD
    return paths


def _join_wandb(cells: pd.DataFrame, report: LoadReport, path: str, grid: str) -> pd.DataFrame:
    from analysis.wandb_join import fetch_runs, join_wandb

    runs, notes = fetch_runs(path, grid)
    joined, more = join_wandb(cells, runs)
    report.messages.extend(notes + more)
    return joined
