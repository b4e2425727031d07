"""(e) Fusion archs under pruning: grouped bars (arch × method, protocol, variant) at one ratio and
layer, with the unpruned bars of each arch and chance dotted; groups without done seeds are marked
by their state instead of a bar."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.patches import Patch

from analysis.data import GridData, most_covered
from paper_figures import style
from paper_figures.common import (
    SkipFigure,
    chance_line,
    done_pruned,
    encoding_note,
    legend,
    look,
    series_keys,
    series_rows,
)

NAME = "arch_comparison"


def make(data: GridData, out_dir: str | Path) -> list[Path]:
    pruned = done_pruned(data)
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
    keys = series_keys(data, slice_)
    width = 0.8 / len(keys)
    with style.paper_style():
        fig = style.new_figure(max(4.5, 1.1 * len(archs) * max(len(keys), 3) * 0.45 + 1.5), 3.3)
        ax = fig.subplots()
        top = 0.0
        unlabelled: dict[str, Patch] = {}  # series without any bar still get a legend entry
        for j, key in enumerate(keys):
            lk = look(data, key)
            labelled = False
            for i, arch in enumerate(archs):
                group = series_rows(slice_[slice_["arch"] == arch], key)
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
                        color=lk.color,
                    )
                    continue
                mean, std = g["accuracy_mean"] * 100, g["accuracy_std"] * 100
                err = std if np.isfinite(std) else 0.0
                ax.bar(
                    x,
                    mean,
                    width * 0.92,
                    color=lk.color if lk.filled else "white",
                    edgecolor=lk.color,
                    linewidth=1.4,
                    yerr=std if np.isfinite(std) else None,
                    ecolor="#333333",
                    label="_" + lk.label if labelled else lk.label,
                )
                labelled = True
                if g["n"] < g["n_planned"]:
                    ax.text(
                        x,
                        mean + err + 1,
                        f"{int(g['n'])}/{int(g['n_planned'])}",
                        ha="center",
                        va="bottom",
                        fontsize=6.5,
                        color="#444444",
                    )
                top = max(top, mean + err)
            if not labelled:
                unlabelled[lk.label] = Patch(
                    facecolor=lk.color if lk.filled else "white", edgecolor=lk.color
                )
        chance = chance_line(ax, data)
        ax.set_xticks(range(len(archs)))
        ax.set_xticklabels([labels.label("arch", a) for a in archs])
        ax.set_ylabel("val accuracy (%)")
        ax.set_ylim(0, max(top * 1.12, chance * 1.12 if np.isfinite(chance) else 0.0, 10.0))
        ax.grid(axis="x", visible=False)
        legend(fig, [ax], data, extra=unlabelled)
        style.set_title(
            fig,
            f"{data.grid}: fusion archs under pruning",
            f"prune ratio {ratio:g} after ViT block {layer}, beside each arch's unpruned model; "
            "chance dotted",
            encoding_note(data, slice_[slice_["n"] > 0]),
        )
        return style.save(fig, out_dir, NAME)
