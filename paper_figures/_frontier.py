"""Shared drawing for accuracy-vs-cost scatter plots with the Pareto frontier (figures b and c)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from analysis.data import GridData
from analysis.pareto import FRONTIERS, frontier_mask, uses_ground_truth
from paper_figures import style
from paper_figures.common import SkipFigure, mark_partial, panel_title, partial_note, pct


def draw_frontier_figure(
    data: GridData, out_dir: str | Path, name: str, frontier: str, xlabel: str, title: str
) -> list[Path]:
    """One panel per arch: every (method, ratio, layer) group as a point with seed error bars, the
    frontier of that arch as a dashed line, and frontier points labelled with ratio/layer."""
    xcol, _ = FRONTIERS[frontier]
    done = data.done
    if done.empty or xcol not in done or done[xcol].notna().sum() == 0:
        raise SkipFigure(
            f"no done cells with {xcol.removesuffix('_mean')} "
            "(speed-ups need a done unpruned reference of the same arch and seed)"
        )
    rows = done[done[xcol].notna() & done["accuracy_mean"].notna()]
    with style.paper_style():
        fig = style.new_figure(3.3 * len(data.archs) + 0.4, 3.2)
        axes = fig.subplots(1, len(data.archs), sharey=True, squeeze=False)[0]
        for ax, arch in zip(axes, data.archs, strict=True):
            part = rows[rows["arch"] == arch]
            _points(ax, data, part, xcol)
            _frontier(ax, data, part[frontier_mask(part, frontier)].sort_values(xcol), xcol)
            ax.set_title(panel_title(data, arch, data.agg))
            ax.set_xlabel(xlabel)
            _pad_x(ax, part[xcol].to_numpy())
        axes[0].set_ylabel("val accuracy (%)")
        style.figure_legend(fig, axes)
        truth = data.labels.sort("method", rows.loc[uses_ground_truth(rows), "method"])
        excluded = ", ".join(data.labels.label("method", m) for m in truth)
        style.set_title(
            fig,
            f"{data.grid}: {title}",
            "mean ± std over seeds; Pareto points labelled r<prune ratio>·l<ViT block>"
            + (f"; {excluded} (ground truth) not on the frontier" if excluded else "")
            + partial_note(rows),
        )
        return style.save(fig, out_dir, name)


def _points(ax, data: GridData, part, xcol: str) -> None:
    std_col = xcol.replace("_mean", "_std")
    for method in data.methods(part):
        pts = part[part["method"] == method]
        look = style.method_style(method)
        ax.errorbar(
            pts[xcol],
            pct(pts["accuracy_mean"]),
            yerr=pct(pts["accuracy_std"]),
            xerr=pts.get(std_col),
            color=look.color,
            marker=look.marker,
            linestyle="none",
            label=data.labels.label("method", method),
            zorder=3,
            markersize=9 if data.labels.is_reference(method) else 6,
        )
        mark_partial(ax, pts[xcol].to_numpy(), pct(pts["accuracy_mean"]), pts, look)


def _frontier(ax, data: GridData, front, xcol: str) -> None:
    ax.plot(
        front[xcol],
        pct(front["accuracy_mean"]),
        color="#444444",
        linestyle="--",
        linewidth=1.0,
        zorder=2,
        label="Pareto frontier",
    )
    for _, r in front.iterrows():  # above the frontier is empty: labels go there
        if data.labels.is_reference(r["method"]):
            continue
        top = r["accuracy_mean"] + (r["accuracy_std"] if np.isfinite(r["accuracy_std"]) else 0.0)
        ax.annotate(
            f"r{r['ratio']:g}·l{int(r['layer'])}",
            (r[xcol], top * 100),
            xytext=(0, 4),
            textcoords="offset points",
            fontsize=7,
            color="#444444",
            ha="center",
            va="bottom",
            zorder=6,
            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8},
        )


def _pad_x(ax, x: np.ndarray) -> None:
    x = x[np.isfinite(x)]
    if not len(x):
        return
    lo, hi = float(x.min()), float(x.max())
    pad = 0.12 * (hi - lo or abs(hi) or 1.0)
    ax.set_xlim(lo - pad, hi + 2 * pad)  # room on the right for the point labels
