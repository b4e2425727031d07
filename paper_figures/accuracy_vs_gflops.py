"""(c) Accuracy vs analytic forward GFLOPs per clip (ViT + connector + LLM), with the Pareto
frontier."""

from __future__ import annotations

from pathlib import Path

from analysis.data import GridData
from paper_figures._frontier import draw_frontier_figure

NAME = "accuracy_vs_gflops"


def make(data: GridData, out_dir: str | Path) -> list[Path]:
    return draw_frontier_figure(
        data,
        out_dir,
        NAME,
        "gflops",
        xlabel="GFLOPs per clip (forward)",
        title="accuracy vs compute",
        detail="compute: analytic forward GFLOPs per clip (ViT with the reducer's scoring, "
        "connector and LLM)",
    )
