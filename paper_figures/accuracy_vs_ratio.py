"""(a) Accuracy vs kept-token fraction, one line per method (and protocol, variant), one panel per
arch; the unpruned accuracy is a dashed line (± std band), chance a dotted one. Error bars: std
over seeds."""

from __future__ import annotations

from pathlib import Path

from analysis.data import GridData, kept_fraction, most_covered
from paper_figures import style
from paper_figures.common import (
    done_pruned,
    encoding_note,
    finish_accuracy_panels,
    save_spread,
    series_panels,
)

NAME = "accuracy_vs_ratio"


def make(data: GridData, out_dir: str | Path) -> list[Path]:
    pruned = done_pruned(data, "no done pruned cells (methods other than the reference)")
    layer = most_covered(pruned, "layer", "ratio")
    rows = pruned[pruned["layer"] == layer]
    shown = data.agg[data.agg["method_is_reference"] | (data.agg["layer"] == layer)]
    with style.paper_style():
        fig, axes, values, panels = series_panels(
            data, rows, shown, kept_fraction, "ratio", band=True
        )
        for ax in axes:
            ax.set_xlabel("kept visual tokens (fraction)")
            ax.set_xlim(0, 1.05)
        finish_accuracy_panels(fig, axes, values, data)
        style.set_title(
            fig,
            f"{data.grid}: accuracy vs kept visual tokens",
            f"pruned after ViT block {layer}; the unpruned model dashed (± std band), chance dotted",
            encoding_note(data, rows),
        )
        return save_spread(fig, panels, out_dir, NAME)
