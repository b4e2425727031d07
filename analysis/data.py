"""One grid as the figures and the report read it: its cells, its seed-aggregated groups and their
labels, plus choosers for the slice a figure shows (a layer, a ratio) when the grid sweeps more
than one figure can draw."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.aggregate import add_reference, aggregate
from analysis.display import PROTOCOL_ORDER, Labels
from analysis.load import load_history, load_results


@dataclass
class GridData:
    root: Path
    grid: str
    cells: pd.DataFrame  # one row per cell, with reference and display columns
    agg: pd.DataFrame  # one row per (grid, arch, method, ratio, layer)
    messages: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, root: str | Path, grid: str) -> GridData:
        cells, report = load_results(root, grid)
        return cls.from_cells(Path(root), grid, cells, report.messages)

    @classmethod
    def from_cells(
        cls, root: Path, grid: str, cells: pd.DataFrame, messages: list[str] | None = None
    ) -> GridData:
        cells = add_reference(cells)
        return cls(root=root, grid=grid, cells=cells, agg=aggregate(cells), messages=messages or [])

    @cached_property
    def labels(self) -> Labels:
        """Labels, order and flags of the grid's methods and archs (from the cells' display)."""
        return Labels.of(self.cells)

    @property
    def done(self) -> pd.DataFrame:
        """Groups with at least one done seed."""
        return self.agg[self.agg["n"] > 0] if not self.agg.empty else self.agg

    @property
    def pruned(self) -> pd.DataFrame:
        """Done groups of every method but the reference."""
        done = self.done
        return done[~done["method_is_reference"].astype(bool)] if not done.empty else done

    @property
    def archs(self) -> list[str]:
        """Every arch of the grid (done or not) in display order: one panel each."""
        return [] if self.agg.empty else self.labels.sort("arch", self.agg["arch"].dropna())

    def methods(self, frame: pd.DataFrame) -> list[str]:
        """The methods present in `frame`, in display order."""
        return self.labels.sort("method", frame["method"].dropna())

    def reference(self, arch: str, protocol: str | None = None) -> pd.Series | None:
        """The aggregated unpruned group of an arch (of `protocol` when given; first layer if
        several), or None."""
        refs = self.references(arch)
        if protocol is not None:
            refs = refs[refs["protocol"] == protocol]
        return None if refs.empty else refs.iloc[0]

    def references(self, arch: str) -> pd.DataFrame:
        """The arch's done unpruned groups of the plain config, one per protocol (base, fine-tuned,
        ... in protocol order; first layer if several)."""
        done = self.done
        if done.empty:
            return done
        refs = done[
            (done["arch"] == arch)
            & done["method_is_reference"].astype(bool)
            & (done["variant"].fillna("") == "")
        ]
        order = {p: i for i, p in enumerate(PROTOCOL_ORDER)}
        refs = refs.assign(_order=refs["protocol"].map(order)).sort_values(["_order", "layer"])
        return refs.drop_duplicates("protocol").drop(columns="_order")

    @cached_property
    def history(self) -> pd.DataFrame:
        """metrics.jsonl rows of the done cells (step, phase, metrics), each with its cell's
        axes (arch, method, ratio, layer, seed, protocol, variant); empty when none logged."""
        axes = ["cell_id", "arch", "method", "ratio", "layer", "seed", "protocol", "variant"]
        done = self.cells[self.cells["state"] == "done"]
        rows = load_history(self.root, self.grid) if len(done) else pd.DataFrame()
        if rows.empty or "step" not in rows:
            return pd.DataFrame(columns=[*axes, "step", "phase"])
        return rows.merge(done[[c for c in axes if c in done]], on="cell_id", how="inner")

    @property
    def chance(self) -> float:
        """Mean chance accuracy of the done cells (NaN when none records it)."""
        done = self.done
        if done.empty or "chance_mean" not in done:
            return float("nan")
        values = pd.to_numeric(done["chance_mean"], errors="coerce").dropna()
        return float(values.mean()) if len(values) else float("nan")


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
