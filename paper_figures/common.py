"""What every figure shares beyond the style: the skip signal, percent scaling, one errorbar line
per method, the reference line, hollow markers for groups with seeds not done, and panel titles
that name the groups a panel cannot show."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from analysis.data import GridData
from paper_figures import style


class SkipFigure(Exception):
    """The grid lacks the data a figure needs; the message says what is missing."""


def pct(values: object) -> np.ndarray:
    """Fractions → percent, NaN stays NaN (std of one seed draws no error bar)."""
    return np.asarray(values, dtype=float) * 100.0


def mark_partial(ax, x: np.ndarray, y: np.ndarray, rows: pd.DataFrame, look) -> None:
    """Redraw as hollow the points whose group has seeds that are not done."""
    partial = (rows["n"] < rows["n_planned"]).to_numpy()
    if partial.any():
        ax.plot(
            np.asarray(x)[partial],
            np.asarray(y)[partial],
            linestyle="none",
            marker=look.marker,
            markerfacecolor="white",
            markeredgecolor=look.color,
            zorder=5,
            label="_partial",
        )


def method_lines(
    ax,
    data: GridData,
    rows: pd.DataFrame,
    x: Callable[[pd.DataFrame], np.ndarray],
    sort_by: str,
) -> None:
    """One accuracy line with seed error bars per method of `rows`, in display order."""
    for method in data.methods(rows):
        part = rows[rows["method"] == method].sort_values(sort_by)
        look = style.method_style(method)
        xs, ys = x(part), pct(part["accuracy_mean"])
        ax.errorbar(
            xs,
            ys,
            yerr=pct(part["accuracy_std"]),
            color=look.color,
            marker=look.marker,
            label=data.labels.label("method", method),
        )
        mark_partial(ax, xs, ys, part, look)


def reference_line(ax, data: GridData, arch: str, band: bool = False) -> None:
    """The unpruned accuracy of `arch` as a dashed line (± std band when asked)."""
    ref = data.reference(arch)
    if ref is None:
        return
    mean, std = ref["accuracy_mean"] * 100, ref["accuracy_std"] * 100
    ax.axhline(mean, color="black", linestyle="--", linewidth=1.2, label="unpruned")
    if band and np.isfinite(std):
        ax.axhspan(mean - std, mean + std, color="black", alpha=0.08, linewidth=0)


def panel_title(data: GridData, arch: str, groups: pd.DataFrame, limit: int = 2) -> str:
    """The arch's label, plus a line naming its groups in `groups` with no done seed (so an
    absent point reads as e.g. 'STTS r0.5·l1: failed', not as forgotten)."""
    labels = data.labels
    bad = groups[(groups["arch"] == arch) & (groups["n"] == 0)]
    items = [
        labels.label("method", g["method"])
        + ("" if labels.is_reference(g["method"]) else f" r{g['ratio']:g}·l{int(g['layer'])}")
        + f": {g['state']}"
        for _, g in bad.iterrows()
    ]
    if len(items) > limit:
        items = items[:limit] + [f"+{len(items) - limit} more not done"]
    return labels.label("arch", arch) + ("\n(" + "; ".join(items) + ")" if items else "")


def partial_note(rows: pd.DataFrame, mark: str = "hollow") -> str:
    """'; hollow = some seeds not done' when a drawn group misses seeds, else ''."""
    partial = ((rows["n"] > 0) & (rows["n"] < rows["n_planned"])).any()
    return f"; {mark} = some seeds not done" if partial else ""
