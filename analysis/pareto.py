"""Pareto frontiers of accuracy against cost (GFLOPs, lower is better) or speed-up (higher is better).

A point is on the frontier when no other point is at least as good on both axes and strictly better
on one; costs within `X_RTOL` of each other count as equal (two reducers of the same kept-token
budget differ by their scoring cost only, a near-tie that must not put the less accurate one on the
frontier). Frontiers are computed per (grid, arch) over the aggregated groups that have done seeds;
methods whose display metadata says `uses_ground_truth` (upper bounds) are left out.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# Relative x difference below which two points count as equally cheap / fast.
X_RTOL = 1e-3
FRONTIERS = {
    # name: (x column, x is better when larger)
    "gflops": ("total_gflops_mean", False),
    "speedup": ("speedup_step_mean", True),
}


def pareto_mask(
    x: np.ndarray, y: np.ndarray, maximize_x: bool, x_rtol: float = X_RTOL
) -> np.ndarray:
    """Boolean mask of non-dominated points (y always maximised); NaN points are never on it."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    xs = x if maximize_x else -x
    valid = np.isfinite(xs) & np.isfinite(y)
    mask = np.zeros(len(x), dtype=bool)
    for i in np.flatnonzero(valid):
        others = valid.copy()
        others[i] = False
        tx = max(_tol(xs[i]), x_rtol * abs(xs[i]))
        ty = _tol(y[i])  # means over seeds differ in the last bits
        dominated = (
            (xs[others] >= xs[i] - tx)
            & (y[others] >= y[i] - ty)
            & ((xs[others] > xs[i] + tx) | (y[others] > y[i] + ty))
        )
        mask[i] = not dominated.any()
    return mask


def _tol(v: float) -> float:
    return 1e-9 * max(1.0, abs(v))


def add_frontiers(agg: pd.DataFrame, by: tuple[str, ...] = ("grid", "arch")) -> pd.DataFrame:
    """Add boolean columns on_front_<name> for each frontier of FRONTIERS, per `by` group."""
    out = agg.copy()
    for name, (xcol, _) in FRONTIERS.items():
        col = f"on_front_{name}"
        out[col] = False
        if xcol not in out or "accuracy_mean" not in out:
            continue
        for _, part in out.groupby(list(by), dropna=False):
            out.loc[part.index, col] = frontier_mask(part, name)
    return out


def frontier_mask(part: pd.DataFrame, name: str) -> np.ndarray:
    """Frontier membership of the rows of one (grid, arch) part; ground-truth methods excluded."""
    xcol, maximize = FRONTIERS[name]
    eligible = ~uses_ground_truth(part)
    x = np.where(eligible, pd.to_numeric(part[xcol], errors="coerce").to_numpy(float), np.nan)
    return pareto_mask(
        x, pd.to_numeric(part["accuracy_mean"], errors="coerce").to_numpy(float), maximize
    )


def uses_ground_truth(part: pd.DataFrame) -> np.ndarray:
    """Which rows belong to a method that reads ground truth (never on a frontier)."""
    if "method_uses_ground_truth" not in part:
        return np.zeros(len(part), dtype=bool)
    return np.array([v == v and bool(v) for v in part["method_uses_ground_truth"]], dtype=bool)
