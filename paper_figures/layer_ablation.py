"""(d) Prune-layer ablation: accuracy vs the ViT block after which tokens are pruned, one line per
method, at the ratio that covers the most layers; unpruned accuracy dashed."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from paper_figures.data import GridData, SkipFigure, mark_partial, most_covered, pct
from paper_figures.style import (
    figure_legend,
    method_sort_key,
    method_style,
    new_figure,
    paper_style,
    save,
    set_title,
)

NAME = "layer_ablation"


def make(data: GridData, out_dir: str | Path) -> list[Path]:
    pruned = data.pruned
    if pruned.empty:
        raise SkipFigure("no done pruned cells")
    ratio = most_covered(pruned, "ratio", "layer")
    rows = pruned[pruned["ratio"] == ratio]
    layers = sorted(rows["layer"].dropna().unique())
    if len(layers) < 2:
        raise SkipFigure(f"the grid sweeps one prune layer only ({', '.join(map(str, layers))})")
    archs = data.archs
    shown = data.agg[(data.agg["method"] == "none") | (data.agg["ratio"] == ratio)]
    with paper_style():
        fig = new_figure(3.2 * len(archs) + 0.4, 3.0)
        axes = fig.subplots(1, len(archs), sharey=True, squeeze=False)[0]
        for ax, arch in zip(axes, archs, strict=True):
            part = rows[rows["arch"] == arch]
            for method in sorted(part["method"].unique(), key=method_sort_key):
                pts = part[part["method"] == method].sort_values("layer")
                style = method_style(method)
                x, y = pts["layer"].astype(float).to_numpy(), pct(pts["accuracy_mean"])
                ax.errorbar(
                    x,
                    y,
                    yerr=pct(pts["accuracy_std"]),
                    color=style.color,
                    marker=style.marker,
                    label=style.label,
                )
                mark_partial(ax, x, y, pts, style)
            ref = data.reference(arch)
            if ref is not None:
                ax.axhline(
                    ref["accuracy_mean"] * 100,
                    color="black",
                    linestyle="--",
                    linewidth=1.2,
                    label="unpruned",
                )
            ax.set_xticks(np.asarray(layers, dtype=float))
            ax.set_xticklabels([str(int(v)) for v in layers])
            ax.set_xlabel("prune after ViT block")
            ax.set_title(data.panel_title(arch, shown))
        axes[0].set_ylabel("val accuracy (%)")
        figure_legend(fig, axes)
        partial = (rows["n"] < rows["n_planned"]).any()
        set_title(
            fig,
            f"{data.grid}: prune-layer ablation at ratio {ratio:g}",
            "mean ± std over seeds" + ("; hollow = some seeds not done" if partial else ""),
        )
        return save(fig, out_dir, NAME)
