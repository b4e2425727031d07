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
    done_pruned,
    encoding_note,
    finish_accuracy_panels,
    save_spread,
    series_panels,
)

NAME = "layer_ablation"


def make(data: GridData, out_dir: str | Path) -> list[Path]:
    pruned = done_pruned(data)
    ratio = most_covered(pruned, "ratio", "layer")
    rows = pruned[pruned["ratio"] == ratio]
    layers = sorted(rows["layer"].dropna().unique())
    if len(layers) < 2:
        raise SkipFigure(f"the grid sweeps one prune layer only ({', '.join(map(str, layers))})")
    shown = data.agg[data.agg["method_is_reference"] | (data.agg["ratio"] == ratio)]
    with style.paper_style():
        fig, axes, values, panels = series_panels(
            data, rows, shown, lambda p: p["layer"].astype(float).to_numpy(), "layer"
        )
        for ax in axes:
            ax.set_xticks(np.asarray(layers, dtype=float))
            ax.set_xticklabels([str(int(v)) for v in layers])
            ax.set_xlim(min(layers) - 0.5, max(layers) + 0.5)
            ax.set_xlabel("prune after ViT block")
        finish_accuracy_panels(fig, axes, values, data)
        style.set_title(
            fig,
            f"{data.grid}: prune-layer ablation at ratio {ratio:g}",
            "the unpruned model dashed, chance dotted",
            encoding_note(data, rows),
        )
        return save_spread(fig, panels, out_dir, NAME)
