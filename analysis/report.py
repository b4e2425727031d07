"""Everything for one grid in one call: tables (CSV/Markdown/LaTeX), the load report, a per-cell
CSV, figures when a figure maker is given (PDF/PNG), and a single self-contained HTML report
(figures embedded as base64 PNG).

Figures belong to paper_figures, which depends on analysis and never the reverse: the report
receives them as a `FigureMaker` (paper_figures.report passes its figure registry).
"""

from __future__ import annotations

import base64
import html
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from analysis.data import GridData
from analysis.load import LoadReport, load_results
from analysis.tables import efficiency_table, pareto_table, qtype_table, write_tables
from core.results import ANALYSIS_DIR, STATES, State, list_grids

HARDWARE_COLUMNS = ("device", "device_name", "threads", "torch", "hostname")


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
    log: Callable[[str], None] = print,
) -> dict[str, Path]:
    """Write all outputs of `grid` into out_dir (default: default_out_dir) and return name → path
    (keys like 'efficiency_md', 'figure_accuracy_vs_ratio_png', 'cells_csv', 'load_report', 'html').
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
        render_html(
            grid, root, data.agg, data.cells, report, figure_pngs, skipped, figures is not None
        )
    )
    return paths


def _join_wandb(cells: pd.DataFrame, report: LoadReport, path: str, grid: str) -> pd.DataFrame:
    from analysis.wandb_join import fetch_runs, join_wandb

    runs, notes = fetch_runs(path, grid)
    joined, more = join_wandb(cells, runs)
    report.messages.extend(notes + more)
    return joined


# ---- HTML ---------------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:1200px;
color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
th,td{padding:.25em .6em;border-bottom:1px solid #eee;text-align:left}
th{background:#f5f5f5}tr.warn td{background:#fff4e0}tr.bad td{background:#fde8e8}
figure{margin:1em 0}img{max-width:100%;border:1px solid #eee}
figcaption{font-size:.85em;color:#555}pre{background:#f7f7f7;padding:.8em;overflow-x:auto;
font-size:.8em}.muted{color:#777}
"""


def html_table(frame: pd.DataFrame, row_class: Callable[[pd.Series], str] | None = None) -> str:
    """A plain escaped HTML table; row_class may mark rows ('warn', 'bad')."""
    if frame.empty:
        return "<p class='muted'>no rows</p>"
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = []
    for _, row in frame.iterrows():
        cls = row_class(row) if row_class else ""
        cells = "".join(f"<td>{html.escape(_text(v))}</td>" for v in row)
        body.append(f"<tr class='{cls}'>{cells}</tr>" if cls else f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def render_html(
    grid: str,
    root: Path,
    agg: pd.DataFrame,
    cells: pd.DataFrame,
    report: LoadReport,
    figure_pngs: dict[str, Path],
    skipped: dict[str, str],
    figures: bool = True,
) -> str:
    """The single-file report: load report, tables, embedded figures, hardware."""
    parts = [
        f"<h1>Grid {html.escape(grid)}</h1>",
        f"<p class='muted'>results root {html.escape(str(root))}; generated "
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}; git "
        f"{html.escape(', '.join(_unique(cells, 'git_commit')) or 'unknown')}</p>",
        "<h2>Cells</h2>",
        _state_counts(report, grid),
        _problem_cells(cells),
    ]
    if report.messages:
        parts.append(
            "<h3>Messages</h3><ul>"
            + "".join(f"<li>{html.escape(m)}</li>" for m in report.messages)
            + "</ul>"
        )

    def mark(row: pd.Series) -> str:  # no done seed → 'bad'; some seeds not done → 'warn'
        acc = str(row.get("Accuracy (%)", row.get("All", "0")))
        if not acc[:1].isdigit():
            return "bad"
        return "warn" if "(" in str(row.get("Seeds", "")) else ""

    for title, build in (
        ("Efficiency–accuracy", efficiency_table),
        ("Pareto frontier", pareto_table),
        ("Accuracy per question type", qtype_table),
    ):
        shown, _ = build(agg)
        parts += [f"<h2>{html.escape(title)}</h2>", html_table(shown, mark)]
    parts.append("<h2>Figures</h2>")
    if not figures:
        parts.append("<p class='muted'>figures were not requested</p>")
    for name, png in figure_pngs.items():
        data = base64.b64encode(png.read_bytes()).decode("ascii")
        parts.append(
            f"<figure><img alt='{html.escape(name)}' src='data:image/png;base64,{data}'>"
            f"<figcaption>{html.escape(name)} ({html.escape(png.name)}, PDF beside it)"
            "</figcaption></figure>"
        )
    if skipped:
        parts.append(
            "<ul>"
            + "".join(
                f"<li>skipped {html.escape(n)}: {html.escape(r)}</li>" for n, r in skipped.items()
            )
            + "</ul>"
        )
    parts += [
        "<h2>Hardware</h2>",
        _hardware(cells),
        "<h2>Load report</h2>",
        f"<pre>{html.escape(report.format())}</pre>",
    ]
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(grid)} report</title><style>{_CSS}</style></head><body>"
        + "\n".join(parts)
        + "</body></html>\n"
    )


def _state_counts(report: LoadReport, grid: str) -> str:
    counts = report.counts.get(grid, {})
    frame = pd.DataFrame([{s: counts.get(s, 0) for s in STATES} | {"total": sum(counts.values())}])
    return html_table(frame)


def _problem_cells(cells: pd.DataFrame) -> str:
    bad = cells[cells["state"] != State.DONE]
    if bad.empty:
        return "<p>every planned cell is done</p>"
    cols = [
        "state",
        "name",
        "cell_id",
        "arch",
        "method",
        "ratio",
        "layer",
        "seed",
        "error",
        "failed_step",
        "attempts",
    ]
    return "<h3>Cells not done (never averaged in)</h3>" + html_table(
        bad[[c for c in cols if c in bad]], lambda r: "bad" if r["state"] == "failed" else "warn"
    )


def _hardware(cells: pd.DataFrame) -> str:
    cols = [c for c in HARDWARE_COLUMNS if c in cells]
    done = cells[cells["state"] == State.DONE]
    if not cols or done.empty:
        return "<p class='muted'>no done cells</p>"
    table = done[cols].astype(str).value_counts().reset_index(name="cells")
    return html_table(table)


def _unique(cells: pd.DataFrame, col: str) -> list[str]:
    return sorted({str(v) for v in cells[col].dropna()}) if col in cells else []


def _text(value: object) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)) or value is pd.NA:
        return "–"
    return str(value)
