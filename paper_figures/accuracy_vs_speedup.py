"""(b) Accuracy vs measured train-step speed-up over the unpruned model, with the Pareto frontier."""

from __future__ import annotations

from pathlib import Path

from analysis.data import GridData
from paper_figures._frontier import draw_frontier_figure

NAME = "accuracy_vs_speedup"


def make(data: GridData, out_dir: str | Path) -> list[Path]:
    return draw_frontier_figure(
        data,
        out_dir,
        NAME,
        "speedup",
        xlabel="train-step speed-up (×)",
        title="accuracy vs measured speed-up",
        detail="speed-up: the unpruned model's train-step time over the cell's, measured side by "
        "side in the cell's process",
    )
