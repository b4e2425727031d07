"""Regenerate every paper figure of one or several grids: `python -m paper_figures --results
results --grid prune_sweep [--grid arch_sweep] --out paper_figures/out` (out/<grid>/<figure>.pdf|png).
A figure whose data is absent is skipped with a printed reason."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from analysis.load import list_grids
from paper_figures import (
    accuracy_vs_gflops,
    accuracy_vs_ratio,
    accuracy_vs_speedup,
    arch_comparison,
    keep_example,
    layer_ablation,
)
from paper_figures.data import GridData, SkipFigure

FIGURES: tuple = (
    accuracy_vs_ratio,
    accuracy_vs_speedup,
    accuracy_vs_gflops,
    layer_ablation,
    arch_comparison,
    keep_example,
)


@dataclass
class FigureOutcome:
    made: dict[str, list[Path]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def make_grid_figures(
    data: GridData, out_dir: str | Path, log: Callable[[str], None] = print
) -> FigureOutcome:
    """Every figure of one grid into out_dir."""
    outcome = FigureOutcome()
    for module in FIGURES:
        try:
            outcome.made[module.NAME] = module.make(data, out_dir)
        except SkipFigure as reason:
            outcome.skipped[module.NAME] = str(reason)
            log(f"[{data.grid}] skipped {module.NAME}: {reason}")
        else:
            log(f"[{data.grid}] wrote {module.NAME}: {outcome.made[module.NAME][0].parent}")
    return outcome


def make_all(
    results_root: str | Path,
    grids: Sequence[str],
    out_dir: str | Path,
    log: Callable[[str], None] = print,
) -> dict[str, FigureOutcome]:
    """Figures of each grid into out_dir/<grid>/; an unknown grid is reported, not raised."""
    available = list_grids(results_root)
    outcomes = {}
    for grid in grids:
        if grid not in available:
            log(
                f"[{grid}] skipped: no such grid under {results_root} "
                f"(available: {', '.join(available) or 'none'})"
            )
            continue
        outcomes[grid] = make_grid_figures(
            GridData.load(results_root, grid), Path(out_dir) / grid, log
        )
    return outcomes


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m paper_figures", description=__doc__)
    parser.add_argument("--results", default="results", help="results root (default: results)")
    parser.add_argument(
        "--grid",
        action="append",
        dest="grids",
        help="grid to draw (repeatable; default: every grid under --results)",
    )
    parser.add_argument("--out", default="paper_figures/out", help="output folder")
    args = parser.parse_args(argv)
    grids = args.grids or list_grids(args.results)
    if not grids:
        print(f"no grids under {args.results}; nothing to draw")
        return 1
    outcomes = make_all(args.results, grids, args.out)
    made = sum(len(o.made) for o in outcomes.values())
    print(f"{made} figure(s) written under {Path(args.out).resolve()}")
    return 0 if outcomes else 1
