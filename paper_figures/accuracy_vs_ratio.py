"""(a) Accuracy vs kept-token fraction, one line per method (and protocol, variant), one panel per
arch; the unpruned accuracy is a dashed line (± std band), chance a dotted one. Error bars: std
over seeds."""

from __future__ import annotations

from pathlib import Path

from analysis.data import GridData, kept_fraction, most_covered
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

NAME = "accuracy_vs_ratio"


def make(data: GridData, out_dir: str | Path) -> list[Path]:
    pruned = data.pruned
    if pruned.empty:
        raise SkipFigure("no done pruned cells (methods other than the reference)")
    layer = most_covered(pruned, "layer", "ratio")
    rows = pruned[pruned["layer"] == layer]
    archs = data.archs
    shown = data.agg[data.agg["method_is_reference"] | (data.agg["layer"] == layer)]
    with style.paper_style():
        fig = style.new_figure(3.3 * len(archs) + 0.6, 3.1)
        axes = fig.subplots(1, len(archs), sharey=True, squeeze=False)[0]
        values, panels = accuracy_values(rows), []
        for ax, arch in zip(axes, archs, strict=True):
            marks = series_lines(ax, data, rows[rows["arch"] == arch], kept_fraction, "ratio")
            values += reference_lines(ax, data, arch, band=True)
            values.append(chance_line(ax, data))
            ax.set_xlabel("kept visual tokens (fraction)")
            ax.set_xlim(0, 1.05)
            ax.set_title(panel_title(data, arch, shown))
            panels.append((ax, marks))
        accuracy_limits(axes, values)
        axes[0].set_ylabel("val accuracy (%)")
        legend(fig, axes, data)
        style.set_title(
            fig,
            f"{data.grid}: accuracy vs kept visual tokens",
            f"pruned after ViT block {layer}; the unpruned model dashed (± std band), chance dotted",
            encoding_note(data, rows),
        )
        for ax, marks in panels:
            spread_marks(fig, ax, marks)
        return style.save(fig, out_dir, NAME)
