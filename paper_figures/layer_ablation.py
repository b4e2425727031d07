"""(d) Prune-layer ablation: accuracy vs the ViT block after which tokens are pruned, one line per
method (and protocol, variant), at the ratio that covers the most layers; unpruned dashed, chance
dotted."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from analysis.data import GridData, most_covered
from paper_figures import style
from paper_figures.common import (
    SkipFigure,
    accuracy_limits,
    accuracy_values,
    chance_line,
    encoding_note,
    legend,
    panel_title,
    reference_lines,
    series_lines,
    spread_marks,
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
    shown = data.agg[data.agg["method_is_reference"] | (data.agg["ratio"] == ratio)]
    with style.paper_style():
        fig = style.new_figure(3.3 * len(data.archs) + 0.6, 3.1)
        axes = fig.subplots(1, len(data.archs), sharey=True, squeeze=False)[0]
        values, panels = accuracy_values(rows), []
        for ax, arch in zip(axes, data.archs, strict=True):
            part = rows[rows["arch"] == arch]
            marks = series_lines(
                ax, data, part, lambda p: p["layer"].astype(float).to_numpy(), "layer"
            )
            values += reference_lines(ax, data, arch)
            values.append(chance_line(ax, data))
            ax.set_xticks(np.asarray(layers, dtype=float))
            ax.set_xticklabels([str(int(v)) for v in layers])
            ax.set_xlim(min(layers) - 0.5, max(layers) + 0.5)
            ax.set_xlabel("prune after ViT block")
            ax.set_title(panel_title(data, arch, shown))
            panels.append((ax, marks))
        accuracy_limits(axes, values)
        axes[0].set_ylabel("val accuracy (%)")
        legend(fig, axes, data)
        style.set_title(
            fig,
            f"{data.grid}: prune-layer ablation at ratio {ratio:g}",
            "the unpruned model dashed, chance dotted",
            encoding_note(data, rows),
        )
        for ax, marks in panels:
            spread_marks(fig, ax, marks)
        return style.save(fig, out_dir, NAME)
