"""(a) Accuracy vs kept-token fraction, one line per method, one panel per arch; the unpruned
accuracy is a dashed line (± std band) and chance a dotted one. Error bars: std over seeds."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from paper_figures.data import (
    GridData,
    SkipFigure,
    kept_fraction,
    mark_partial,
    most_covered,
    pct,
)
from paper_figures.style import (
    figure_legend,
    method_sort_key,
    method_style,
    new_figure,
    paper_style,
    save,
    set_title,
)

NAME = "accuracy_vs_ratio"


def make(data: GridData, out_dir: str | Path) -> list[Path]:
    pruned = data.pruned
    if pruned.empty:
        raise SkipFigure("no done pruned cells (method other than none)")
    layer = most_covered(pruned, "layer", "ratio")
    rows = pruned[pruned["layer"] == layer]
    archs = data.archs
    shown = data.agg[(data.agg["method"] == "none") | (data.agg["layer"] == layer)]
    with paper_style():
        fig = new_figure(3.2 * len(archs) + 0.4, 3.0)
        axes = fig.subplots(1, len(archs), sharey=True, squeeze=False)[0]
        for ax, arch in zip(axes, archs, strict=True):
            _panel(ax, data, rows[rows["arch"] == arch], arch)
            ax.set_title(data.panel_title(arch, shown))
        axes[0].set_ylabel("val accuracy (%)")
        figure_legend(fig, axes)
        partial = (rows["n"] < rows["n_planned"]).any()
        set_title(
            fig,
            f"{data.grid}: accuracy vs kept visual tokens",
            f"pruned after ViT block {layer}; mean ± std over seeds"
            + ("; hollow = some seeds not done" if partial else ""),
        )
        return save(fig, out_dir, NAME)


def _panel(ax, data: GridData, rows, arch: str) -> None:
    for method in sorted(rows["method"].unique(), key=method_sort_key):
        part = rows[rows["method"] == method].sort_values("ratio")
        style = method_style(method)
        x, y, err = kept_fraction(part), pct(part["accuracy_mean"]), pct(part["accuracy_std"])
        ax.errorbar(x, y, yerr=err, color=style.color, marker=style.marker, label=style.label)
        mark_partial(ax, x, y, part, style)
    ref = data.reference(arch)
    if ref is not None:
        mean, std = ref["accuracy_mean"] * 100, ref["accuracy_std"] * 100
        ax.axhline(mean, color="black", linestyle="--", linewidth=1.2, label="unpruned")
        if np.isfinite(std):
            ax.axhspan(mean - std, mean + std, color="black", alpha=0.08, linewidth=0)
    done = data.done
    chance = done.loc[done["arch"] == arch, "chance_mean"].dropna()
    if len(chance):
        ax.axhline(
            chance.mean() * 100, color="#7f7f7f", linestyle=":", linewidth=1.2, label="chance"
        )
    ax.set_xlabel("kept visual tokens (fraction)")
    ax.set_xlim(0, 1.05)
