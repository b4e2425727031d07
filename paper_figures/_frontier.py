"""Shared drawing for accuracy-vs-cost scatter plots with the Pareto frontier (figures b and c)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from analysis.data import GridData
from analysis.pareto import FRONTIERS, frontier_mask, uses_ground_truth
from paper_figures import style
from paper_figures.common import (
    SkipFigure,
    accuracy_values,
    arch_panels,
    chance_line,
    draw_point,
    encoding_note,
    finish_accuracy_panels,
    look,
    pad_limits,
    panel_title,
    pct,
    save_spread,
    seed_counts,
    series_keys,
    series_rows,
)


def draw_frontier_figure(
    data: GridData,
    out_dir: str | Path,
    name: str,
    frontier: str,
    xlabel: str,
    title: str,
    detail: str = "",
) -> list[Path]:
    """One panel per arch: every (method, protocol, variant, ratio, layer) group as a point with
    seed error bars, the frontier of that arch as a dashed line, chance dotted, and frontier
    points labelled with ratio/layer when the grid sweeps more than one."""
    xcol, _ = FRONTIERS[frontier]
    done = data.done
    if done.empty or xcol not in done or done[xcol].notna().sum() == 0:
        raise SkipFigure(
            f"no done cells with {xcol.removesuffix('_mean')} "
            "(speed-ups need a done unpruned reference of the same arch and seed)"
        )
    rows = done[done[xcol].notna() & done["accuracy_mean"].notna()]
    swept = rows["ratio"].nunique() > 2 or rows["layer"].nunique() > 1  # 0 + one ratio: not swept
    with style.paper_style():
        fig, axes = arch_panels(data, 3.4, 3.3)
        panels = []
        for ax, arch in zip(axes, data.archs, strict=True):
            part = rows[rows["arch"] == arch]
            marks = _points(ax, data, part, xcol)
            _frontier(ax, data, part[frontier_mask(part, frontier)].sort_values(xcol), xcol, swept)
            ax.set_title(panel_title(data, arch, data.agg))
            ax.set_xlabel(xlabel)
            pad_limits(ax, "x", part[xcol].to_numpy(), right=2.0 if swept else 1.0)
            panels.append((ax, marks))
        chance = chance_line(axes[0], data)
        for ax in axes[1:]:
            chance_line(ax, data)
        finish_accuracy_panels(fig, axes, [*accuracy_values(rows), chance], data)
        truth = data.labels.sort("method", rows.loc[uses_ground_truth(rows), "method"])
        excluded = ", ".join(data.labels.label("method", m) for m in truth)
        style.set_title(
            fig,
            f"{data.grid}: {title}",
            detail,
            "dashed: the Pareto frontier"
            + ("; its points labelled r<prune ratio>·l<ViT block>" if swept else "")
            + (f" ({excluded}: ground truth, never on it)" if excluded else "")
            + "; dotted: chance",
            encoding_note(data, rows),
        )
        return save_spread(fig, panels, out_dir, name)


def _points(ax, data: GridData, part, xcol: str) -> list:
    std_col = xcol.replace("_mean", "_std")
    marks = []
    for key in series_keys(data, part):
        lk = look(data, key)
        pts = series_rows(part, key)
        for i, (_, r) in enumerate(pts.iterrows()):  # one mark per group: each moves on its own
            mark = draw_point(
                ax,
                [r[xcol]],
                pct([r["accuracy_mean"]]),
                pct([r["accuracy_std"]]),
                lk,
                xerr=[r.get(std_col, np.nan)],
                legend=i == 0,
            )
            marks.append(mark)
        seed_counts(ax, pts[xcol].to_numpy(), pct(pts["accuracy_mean"]), pts)
    return marks


def _frontier(ax, data: GridData, front, xcol: str, swept: bool) -> None:
    ax.plot(
        front[xcol],
        pct(front["accuracy_mean"]),
        color="#444444",
        linestyle="--",
        linewidth=1.0,
        zorder=2,
        label="Pareto frontier",
    )
    if not swept:
        return
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
