"""(a) Accuracy vs kept-token fraction, one line per method, one panel per arch; the unpruned
accuracy is a dashed line (± std band) and chance a dotted one. Error bars: std over seeds."""

from __future__ import annotations

from pathlib import Path

from analysis.data import GridData, kept_fraction, most_covered
from paper_figures import style
from paper_figures.common import SkipFigure, method_lines, panel_title, partial_note, reference_line

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
        fig = style.new_figure(3.2 * len(archs) + 0.4, 3.0)
        axes = fig.subplots(1, len(archs), sharey=True, squeeze=False)[0]
        for ax, arch in zip(axes, archs, strict=True):
            method_lines(ax, data, rows[rows["arch"] == arch], kept_fraction, "ratio")
            reference_line(ax, data, arch, band=True)
            chance = data.done.loc[data.done["arch"] == arch, "chance_mean"].dropna()
            if len(chance):
                mean = chance.mean() * 100
                ax.axhline(mean, color="#7f7f7f", linestyle=":", linewidth=1.2, label="chance")
            ax.set_xlabel("kept visual tokens (fraction)")
            ax.set_xlim(0, 1.05)
            ax.set_title(panel_title(data, arch, shown))
        axes[0].set_ylabel("val accuracy (%)")
        style.figure_legend(fig, axes)
        style.set_title(
            fig,
            f"{data.grid}: accuracy vs kept visual tokens",
            f"pruned after ViT block {layer}; mean ± std over seeds" + partial_note(rows),
        )
        return style.save(fig, out_dir, NAME)
