"""(e) Fusion archs under pruning: grouped bars (arch × method) at one ratio and layer, with the
unpruned bar of each arch; groups without done seeds are marked by their state instead of a bar."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.patches import Patch

from analysis.aggregate import REFERENCE_METHOD
from paper_figures.data import GridData, SkipFigure, most_covered
from paper_figures.style import (
    arch_label,
    legend_columns,
    method_sort_key,
    method_style,
    new_figure,
    paper_style,
    save,
    set_title,
)

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
    slice_ = agg[
        (agg["method"] == REFERENCE_METHOD) | ((agg["ratio"] == ratio) & (agg["layer"] == layer))
    ]
    archs = list(dict.fromkeys(slice_["arch"]))
    methods = sorted(slice_["method"].unique(), key=method_sort_key)
    width = 0.8 / len(methods)
    with paper_style():
        fig = new_figure(max(4.5, 1.1 * len(archs) * max(len(methods), 3) * 0.45 + 1.5), 3.2)
        ax = fig.subplots()
        top = 0.0
        for j, method in enumerate(methods):
            style = method_style(method)
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
                        color=style.color,
                    )
                    continue
                mean, std = g["accuracy_mean"] * 100, g["accuracy_std"] * 100
                partial = g["n"] < g["n_planned"]
                ax.bar(
                    x,
                    mean,
                    width * 0.92,
                    color="white" if partial else style.color,
                    edgecolor=style.color,
                    hatch="//" if partial else None,
                    yerr=std if np.isfinite(std) else None,
                    ecolor="#333333",
                )
                top = max(top, mean + (std if np.isfinite(std) else 0))
        handles = [Patch(color=method_style(m).color, label=method_style(m).label) for m in methods]
        ax.set_xticks(range(len(archs)))
        ax.set_xticklabels([arch_label(a) for a in archs])
        ax.set_ylabel("val accuracy (%)")
        ax.set_ylim(0, max(top * 1.12, 10))
        ax.grid(axis="x", visible=False)
        fig.legend(
            handles,
            [h.get_label() for h in handles],
            loc="outside lower center",
            ncol=legend_columns(fig, len(methods)),
        )
        partial_any = ((slice_["n"] > 0) & (slice_["n"] < slice_["n_planned"])).any()
        set_title(
            fig,
            f"{data.grid}: fusion archs under pruning",
            f"prune ratio {ratio:g} after ViT block {layer}; mean ± std over seeds"
            + ("; hatched = some seeds not done" if partial_any else ""),
        )
        return save(fig, out_dir, NAME)
