"""The single-file HTML report of a grid: sortable, filterable tables, the interactive
efficiency–accuracy plot, the figures (embedded PNG with their captions), per-cell rows linking to
each cell's folder or W&B run, problems, hardware and the load report.

Everything is inline (style, script, images, data as a JSON block): the file opens offline and
loads nothing. The script is analysis.report_assets.JS; it reads the JSON block `#report-data`
built by `plot_data`. Links to cell folders are relative to the report's folder, so the report
keeps working when the results tree is moved or copied as a whole.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.data import GridData
from analysis.display import PROTOCOL_ORDER, protocol_label
from analysis.load import LoadReport
from analysis.palette import series_style
from analysis.report_assets import CSS, JS
from analysis.tables import efficiency_table, pareto_table, qtype_table
from core.results import STATES, State

HARDWARE_COLUMNS = ("device", "device_name", "threads", "torch", "hostname")
# table columns offered as filter menus (the group's axes and names)
CATEGORY_COLUMNS = (
    "Grid",
    "Arch",
    "Protocol",
    "Stage",
    "Method",
    "Variant",
    "Ratio",
    "Layer",
    "Seed",
    "State",
    "Seeds",
)
X_AXES = (
    ("speedup", "train-step speed-up (×, measured)"),
    ("gflops", "GFLOPs per clip (forward)"),
    ("kept_fraction", "kept visual tokens (fraction)"),
)


def html_table(
    frame: pd.DataFrame,
    row_class: Callable[[pd.Series], str] | None = None,
    raw_html: Iterable[str] = (),
    table_id: str = "",
) -> str:
    """An escaped HTML table in a `.table-wrap` (sortable and filterable by the script); columns
    named in CATEGORY_COLUMNS get filter menus; `raw_html` columns hold trusted markup (links
    built here); row_class may mark rows ('warn', 'bad'); `table_id` names the wrapper (the
    table and its filter bar)."""
    if frame.empty:
        return "<p class='muted'>no rows</p>"
    raw = set(raw_html)
    head = "".join(
        ("<th class='cat'>" if c in CATEGORY_COLUMNS else "<th>") + f"{html.escape(str(c))}</th>"
        for c in frame.columns
    )
    body = []
    for _, row in frame.iterrows():
        cls = row_class(row) if row_class else ""
        cells = "".join(
            f"<td>{v if c in raw else html.escape(_text(v))}</td>"
            for c, v in zip(frame.columns, row, strict=True)
        )
        body.append(f"<tr class='{cls}'>{cells}</tr>" if cls else f"<tr>{cells}</tr>")
    ident = f" id='{html.escape(table_id)}'" if table_id else ""
    return (
        f"<div class='table-wrap'{ident}><table><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def render_html(
    data: GridData,
    report: LoadReport,
    out_dir: Path,
    figure_pngs: dict[str, Path],
    skipped: dict[str, str],
    figures: bool = True,
) -> str:
    """The single-file report of `data`'s grid, with links relative to `out_dir`."""
    grid, cells, agg = data.grid, data.cells, data.agg
    parts = [
        f"<h1>Grid {html.escape(grid)}</h1>",
        f"<p class='muted'>results root {html.escape(str(data.root))}; generated "
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}; git "
        f"{html.escape(', '.join(_unique(cells, 'git_commit')) or 'unknown')}</p>",
        "<nav>"
        + "".join(
            f"<a href='#{a}'>{t}</a>"
            for a, t in (
                ("efficiency", "table"),
                ("plot", "plot"),
                ("pareto", "Pareto"),
                ("qtypes", "question types"),
                ("figures", "figures"),
                ("cells", "cells"),
                ("load", "load report"),
            )
        )
        + "</nav>",
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

    for anchor, title, build in (
        ("efficiency", "Efficiency–accuracy", efficiency_table),
        ("pareto", "Pareto frontier", pareto_table),
        ("qtypes", "Accuracy per question type", qtype_table),
    ):
        shown, _ = build(agg)
        parts += [
            f"<h2 id='{anchor}'>{html.escape(title)}</h2>",
            html_table(shown, mark, (), f"{anchor}-table"),
        ]
        if anchor == "efficiency":
            parts.append(_plot_section())
    parts.append("<h2 id='figures'>Figures</h2>")
    if not figures:
        parts.append("<p class='muted'>figures were not requested</p>")
    for name, png in figure_pngs.items():
        encoded = base64.b64encode(png.read_bytes()).decode("ascii")
        caption = figure_caption(png)
        parts.append(
            f"<figure id='figure-{html.escape(name)}'><img alt='{html.escape(name)}' "
            f"src='data:image/png;base64,{encoded}'><figcaption><b>{html.escape(name)}</b> "
            f"({html.escape(png.name)}, PDF and caption files beside it). "
            f"{html.escape(caption)}</figcaption></figure>"
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
        "<h2 id='cells'>Every cell</h2>",
        "<p class='muted'>one row per planned cell; the name opens the cell's folder, W&amp;B "
        "its run (online runs; offline runs live in the folder's wandb/)</p>",
        _cell_table(data, out_dir),
        "<h2>Hardware</h2>",
        _hardware(cells),
        "<h2 id='load'>Load report</h2>",
        f"<pre>{html.escape(report.format())}</pre>",
    ]
    payload = json.dumps(plot_data(data, out_dir), allow_nan=False, ensure_ascii=False)
    payload = payload.replace("<", "\\u003c")  # no markup can end or open a tag in the block
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{html.escape(grid)} report</title><style>{CSS}</style></head><body>"
        + "\n".join(parts)
        + f"\n<script type='application/json' id='report-data'>{payload}</script>"
        + f"\n<script>{JS}</script></body></html>\n"
    )


def _plot_section() -> str:
    options = "".join(f"<option value='{k}'>{html.escape(t)}</option>" for k, t in X_AXES)
    return (
        "<section id='plot'><h3>Accuracy vs cost, one point per done cell</h3>"
        "<div class='controls'><label>x axis <select class='x-axis'>"
        f"{options}</select></label><span class='muted'>hover a point for its cell; click to "
        "open its W&amp;B run or folder; filled = fine-tuned, hollow = the base's weights "
        "(zero-shot), star = unpruned; overlapping points are drawn side by side</span></div>"
        "<div class='legend'></div><div class='svg'></div><div id='tip' hidden></div></section>"
    )


def plot_data(data: GridData, out_dir: Path) -> dict[str, Any]:
    """The JSON the report's script reads: every cell (axes, labels, state, accuracy, the plot's
    x values, its look and its link) and the series in display order."""
    cells = data.cells
    labels = data.labels
    protocols = set(cells["protocol"].dropna()) - {"scratch"} if "protocol" in cells else set()
    variants = sorted(set(cells["variant"].fillna(""))) if "variant" in cells else []
    proto_order = {p: i for i, p in enumerate(PROTOCOL_ORDER)}
    rows, series = [], {}
    for _, c in cells.iterrows():
        method, protocol = str(c["method"]), str(c.get("protocol") or "scratch")
        variant = str(c.get("variant") or "")
        drawn = series_style(
            method,
            protocol,
            variant,
            is_reference=labels.is_reference(method),
            variants=variants,
        )
        key = f"{method}|{protocol}|{variant}"
        label = labels.series(method, variant) + (
            f" · {protocol_label(protocol)}" if protocols else ""
        )
        link, link_label = _link(c, out_dir)
        rows.append(
            {
                "cell_id": str(c["cell_id"]),
                "name": str(c["name"]),
                "arch": str(c["arch"]),
                "arch_label": labels.label("arch", c["arch"]),
                "method": method,
                "protocol": protocol,
                "protocol_label": protocol_label(protocol),
                "variant": variant,
                "series": key,
                "series_label": label,
                "ratio": _num(c.get("ratio")),
                "layer": _num(c.get("layer")),
                "seed": _num(c.get("seed")),
                "state": str(c["state"]),
                "accuracy": _num(c.get("accuracy")),
                "speedup": _num(c.get("speedup_train_measured")),
                "gflops": _num(c.get("total_gflops")),
                "kept_fraction": _num(c.get("kept_fraction")),
                "color": drawn.color,
                "marker": drawn.marker,
                "filled": drawn.filled,
                "size": 8 if drawn.reference else 5.5,
                "link": link,
                "link_label": link_label,
            }
        )
        series.setdefault(
            key,
            {
                "key": key,
                "label": label,
                "color": drawn.color,
                "marker": drawn.marker,
                "filled": drawn.filled,
                "_order": (
                    labels.order("method", method),
                    proto_order.get(protocol, 99),
                    variant,
                ),
            },
        )
    ordered = sorted(series.values(), key=lambda s: s["_order"])
    for s in ordered:
        s.pop("_order")
    chance = data.chance
    return {
        "grid": data.grid,
        "chance": chance if math.isfinite(chance) else None,
        "cells": rows,
        "series": ordered,
    }


def _link(cell: pd.Series, out_dir: Path) -> tuple[str, str]:
    """Where a click on a cell goes: its online W&B run, else its folder (relative to the
    report, so a copied tree keeps working); '' for a planned cell with no folder."""
    for col in ("wandb_url", "wandb_run_url"):
        url = cell.get(col)
        if isinstance(url, str) and url.startswith(("https://", "http://")):
            return url, f"W&B run {url}"
    folder = cell.get("cell_dir")
    if isinstance(folder, str) and folder:
        rel = os.path.relpath(folder, out_dir)
        href = Path(rel).as_posix().rstrip("/") + "/"
        return href, f"cell folder {href}"
    return "", "no folder (cell not prepared)"


def _cell_table(data: GridData, out_dir: Path) -> str:
    cells = data.cells
    if cells.empty:
        return "<p class='muted'>no cells</p>"
    frame = pd.DataFrame(
        {
            "Cell": [_anchor(*_link(c, out_dir)[:1], str(c["name"])) for _, c in cells.iterrows()],
            "Arch": [data.labels.label("arch", a) for a in cells["arch"]],
            "Protocol": [protocol_label(p) for p in cells["protocol"]],
            "Method": [
                data.labels.series(m, v)
                for m, v in zip(cells["method"], cells["variant"], strict=True)
            ],
            "Ratio": cells["ratio"].map(lambda r: f"{r:g}" if pd.notna(r) else "–"),
            "Layer": cells["layer"],
            "Seed": cells["seed"],
            "State": cells["state"],
            "Accuracy (%)": _formatted(cells, "accuracy", "{:.1f}", 100),
            "Speed-up (measured)": _formatted(cells, "speedup_train_measured", "{:.2f}×"),
            "GFLOPs": _formatted(cells, "total_gflops", "{:.3f}"),
            "W&B": [_wandb_cell(c) for _, c in cells.iterrows()],
            "Error": cells.get("error"),
        }
    )
    if not (set(cells["protocol"].dropna()) - {"scratch"}):
        frame = frame.drop(columns="Protocol")

    def state_class(row: pd.Series) -> str:
        return "" if row["State"] == State.DONE else "bad" if row["State"] == "failed" else "warn"

    return html_table(frame, state_class, ("Cell", "W&B"), "cells-table")


def _formatted(cells: pd.DataFrame, col: str, spec: str, scale: float = 1.0) -> pd.Series:
    """Column `col` as text (scaled, `spec`-formatted), '–' where absent or not a number."""
    values = pd.to_numeric(cells[col], errors="coerce") if col in cells else None
    if values is None:
        return pd.Series("–", index=cells.index)
    return values.map(lambda v: spec.format(scale * v) if pd.notna(v) else "–")


def _anchor(href: str, text: str) -> str:
    if not href:
        return html.escape(text)
    return f"<a href='{html.escape(href, quote=True)}'>{html.escape(text)}</a>"


def _wandb_cell(cell: pd.Series) -> str:
    url = cell.get("wandb_url") or cell.get("wandb_run_url")
    if isinstance(url, str) and url.startswith(("https://", "http://")):
        return _anchor(url, "run")
    mode = cell.get("wandb_run_mode")
    return html.escape(str(mode)) if isinstance(mode, str) and mode else "–"


def figure_caption(png: Path) -> str:
    """The caption written beside a figure (<stem>.caption.txt), '' when there is none."""
    caption = png.with_name(png.stem + ".caption.txt")
    return caption.read_text().strip() if caption.is_file() else ""


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
        "protocol",
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


def _num(value: object) -> float | int | None:
    """A JSON number (None for NaN/NA/absent)."""
    if value is None or value is pd.NA:
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    if not math.isfinite(number):
        return None
    return int(number) if number.is_integer() and not isinstance(value, float) else number


def _text(value: object) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)) or value is pd.NA:
        return "–"
    return str(value)
