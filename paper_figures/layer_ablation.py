"""(d) Prune-layer ablation: accuracy vs the ViT block after which tokens are pruned, one line per
method, at the ratio that covers the most layers; unpruned accuracy dashed."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from analysis.data import GridData, most_covered
from paper_figures import style
from paper_figures.common import SkipFigure, method_lines, panel_title, partial_note, reference_line

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
    shown = data.agg[data.agg["method_is_reference"] | (data.agg["ratio"] == ratio)]
    with style.paper_style():
        fig = style.new_figure(3.2 * len(data.archs) + 0.4, 3.0)
        axes = fig.subplots(1, len(data.archs), sharey=True, squeeze=False)[0]
        for ax, arch in zip(axes, data.archs, strict=True):
            part = rows[rows["arch"] == arch]
            method_lines(ax, data, part, lambda p: p["layer"].astype(float).to_numpy(), "layer")
            reference_line(ax, data, arch)
            ax.set_xticks(np.asarray(layers, dtype=float))
            ax.set_xticklabels([str(int(v)) for v in layers])
            ax.set_xlabel("prune after ViT block")
            ax.set_title(panel_title(data, arch, shown))
        axes[0].set_ylabel("val accuracy (%)")
        style.figure_legend(fig, axes)
        style.set_title(
            fig,
            f"{data.grid}: prune-layer ablation at ratio {ratio:g}",
            "mean ± std over seeds" + partial_note(rows),
        )
        return style.save(fig, out_dir, NAME)
