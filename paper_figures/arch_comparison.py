"""(e) Fusion archs under pruning: grouped bars (arch × method) at one ratio and layer, with the
unpruned bar of each arch; groups without done seeds are marked by their state instead of a bar."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.patches import Patch

from analysis.data import GridData, most_covered
from paper_figures import style
from paper_figures.common import SkipFigure, partial_note

NAME = "arch_comparison"


def make(data: GridData, out_dir: str | Path) -> list[Path]:
    pruned = data.pruned
    if pruned.empty:
        raise SkipFigure("no done pruned cells")
    ratio = most_covered(pruned, "ratio", "arch")
    at_ratio = pruned[pruned["ratio"] == ratio]
    layer = most_covered(at_ratio, "layer", "method")
    if at_ratio["arch"].nunique() < 2:
        raise SkipFigure(
            f"needs ≥ 2 fusion archs with done pruned cells (has {at_ratio['arch'].iloc[0]})"
        )
    agg = data.agg  # all groups: archs/methods without done seeds are shown by their state
    slice_ = agg[agg["method_is_reference"] | ((agg["ratio"] == ratio) & (agg["layer"] == layer))]
    labels = data.labels
    archs = labels.sort("arch", slice_["arch"])
    methods = data.methods(slice_)
    width = 0.8 / len(methods)
    with style.paper_style():
        fig = style.new_figure(max(4.5, 1.1 * len(archs) * max(len(methods), 3) * 0.45 + 1.5), 3.2)
        ax = fig.subplots()
        top = 0.0
        for j, method in enumerate(methods):
            look = style.method_style(method)
            for i, arch in enumerate(archs):
                group = slice_[(slice_["arch"] == arch) & (slice_["method"] == method)]
                x = i - 0.4 + width * (j + 0.5)
                g = None if group.empty else group.sort_values("layer").iloc[0]
                if g is None or g["n"] == 0:  # name the gap instead of leaving it unexplained
                    label = "not in grid" if g is None else str(g["state"])
                    ax.text(
                        x,
                        1,
                        label,
                        rotation=90,
                        ha="center",
                        va="bottom",
                        fontsize=8,
                        color=look.color,
                    )
                    continue
                mean, std = g["accuracy_mean"] * 100, g["accuracy_std"] * 100
                partial = g["n"] < g["n_planned"]
                ax.bar(
                    x,
                    mean,
                    width * 0.92,
                    color="white" if partial else look.color,
                    edgecolor=look.color,
                    hatch="//" if partial else None,
                    yerr=std if np.isfinite(std) else None,
                    ecolor="#333333",
                )
                top = max(top, mean + (std if np.isfinite(std) else 0))
        handles = [
            Patch(color=style.method_style(m).color, label=labels.label("method", m))
            for m in methods
        ]
        ax.set_xticks(range(len(archs)))
        ax.set_xticklabels([labels.label("arch", a) for a in archs])
        ax.set_ylabel("val accuracy (%)")
        ax.set_ylim(0, max(top * 1.12, 10))
        ax.grid(axis="x", visible=False)
        fig.legend(
            handles,
            [h.get_label() for h in handles],
            loc="outside lower center",
            ncol=style.legend_columns(fig, len(methods)),
        )
        style.set_title(
            fig,
            f"{data.grid}: fusion archs under pruning",
            f"prune ratio {ratio:g} after ViT block {layer}; mean ± std over seeds"
            + partial_note(slice_, "hatched"),
        )
        return style.save(fig, out_dir, NAME)
