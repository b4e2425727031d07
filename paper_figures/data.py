"""What every figure reads: one grid's cells and seed-aggregated groups, plus choosers for the
slice a figure shows (a layer, a ratio) when the grid sweeps more than one figure can draw."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.aggregate import REFERENCE_METHOD, add_reference, aggregate
from analysis.load import load_results


class SkipFigure(Exception):
    """The grid lacks the data a figure needs; the message says what is missing."""


@dataclass
class GridData:
    root: Path
    grid: str
    cells: pd.DataFrame  # one row per cell, with reference columns
    agg: pd.DataFrame  # one row per (grid, arch, method, ratio, layer)

    @classmethod
    def load(cls, root: str | Path, grid: str) -> GridData:
        cells, _ = load_results(root, grid)
        return cls.from_cells(Path(root), grid, cells)

    @classmethod
    def from_cells(cls, root: Path, grid: str, cells: pd.DataFrame) -> GridData:
        cells = add_reference(cells)
        return cls(root=root, grid=grid, cells=cells, agg=aggregate(cells))

    @property
    def done(self) -> pd.DataFrame:
        """Groups with at least one done seed."""
        return self.agg[self.agg["n"] > 0] if not self.agg.empty else self.agg

    @property
    def pruned(self) -> pd.DataFrame:
        done = self.done
        return done[done["method"] != REFERENCE_METHOD] if not done.empty else done

    @property
    def archs(self) -> list[str]:
        """Every arch of the grid (done or not) in canonical order: one panel each."""
        return [] if self.agg.empty else list(dict.fromkeys(self.agg["arch"].dropna()))

    def panel_title(self, arch: str, groups: pd.DataFrame, limit: int = 2) -> str:
        """The arch's label, plus a line naming its groups in `groups` with no done seed (so an
        absent point reads as e.g. 'STTS r0.5·l1: failed', not as forgotten)."""
        from paper_figures.style import arch_label, method_style

        bad = groups[(groups["arch"] == arch) & (groups["n"] == 0)]
        items = [
            method_style(g["method"]).label
            + ("" if g["method"] == REFERENCE_METHOD else f" r{g['ratio']:g}·l{int(g['layer'])}")
            + f": {g['state']}"
            for _, g in bad.iterrows()
        ]
        if len(items) > limit:
            items = items[:limit] + [f"+{len(items) - limit} more not done"]
        return arch_label(arch) + ("\n(" + "; ".join(items) + ")" if items else "")

    def reference(self, arch: str) -> pd.Series | None:
        """The aggregated unpruned group of an arch (first layer if several), or None."""
        done = self.done
        if done.empty:
            return None
        ref = done[(done["arch"] == arch) & (done["method"] == REFERENCE_METHOD)]
        return None if ref.empty else ref.sort_values("layer").iloc[0]


def most_covered(frame: pd.DataFrame, column: str, spread: str) -> object:
    """The value of `column` with the most distinct `spread` values (ties: most rows, then the
    smallest value); used to pick e.g. the layer that has the most ratios."""
    stats = frame.groupby(column)[spread].agg(["nunique", "size"]).reset_index()
    stats = stats.sort_values(["nunique", "size", column], ascending=[False, False, True])
    return stats.iloc[0][column]


def kept_fraction(rows: pd.DataFrame) -> np.ndarray:
    """Measured kept fraction of visual tokens, falling back to 1 − ratio where absent."""
    measured = rows.get("kept_fraction_mean")
    fallback = 1.0 - rows["ratio"].astype(float)
    if measured is None:
        return fallback.to_numpy()
    return measured.astype(float).fillna(fallback).to_numpy()


def pct(values: object) -> np.ndarray:
    """Fractions → percent, NaN stays NaN (std of one seed draws no error bar)."""
    return np.asarray(values, dtype=float) * 100.0


def mark_partial(ax, x: np.ndarray, y: np.ndarray, rows: pd.DataFrame, style) -> None:
    """Redraw as hollow the points whose group has seeds that are not done."""
    partial = (rows["n"] < rows["n_planned"]).to_numpy()
    if partial.any():
        ax.plot(
            np.asarray(x)[partial],
            np.asarray(y)[partial],
            linestyle="none",
            marker=style.marker,
            markerfacecolor="white",
            markeredgecolor=style.color,
            zorder=5,
            label="_partial",
        )
