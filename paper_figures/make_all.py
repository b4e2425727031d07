"""Regenerate every paper figure of one or several grids: `python -m paper_figures --results
results --grid prune_sweep [--grid arch_sweep] --out paper_figures/out [--no-titles]`
(out/<grid>/<figure>.pdf|png, with <figure>.caption.txt|tex beside each). A figure whose data is
absent is skipped with a printed reason."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from analysis.cli import add_titles_flag, grid_parser
from analysis.data import GridData
from analysis.report import FigureOutcome
from core.results import list_grids
from paper_figures import (
    accuracy_vs_gflops,
    accuracy_vs_ratio,
    accuracy_vs_speedup,
    accuracy_vs_speedup_by_stage,
    arch_comparison,
    keep_example,
    layer_ablation,
    style,
    training_curves,
)
from paper_figures.common import SkipFigure

# The figure registry: each module has NAME and make(data, out_dir) -> [pdf, png, captions].
FIGURES: tuple = (
    accuracy_vs_ratio,
    accuracy_vs_speedup,
    accuracy_vs_speedup_by_stage,
    accuracy_vs_gflops,
    layer_ablation,
    arch_comparison,
    keep_example,
    training_curves,
)


def make_grid_figures(
    data: GridData,
    out_dir: str | Path,
    log: Callable[[str], None] = print,
    *,
    titles: bool = True,
) -> FigureOutcome:
    """Every figure of one grid into out_dir (an `analysis.report.FigureMaker`); titles=False
    draws no headline (the caption files beside each figure carry it)."""
    outcome = FigureOutcome()
    for module in FIGURES:
        try:
            with style.figure_options(titles=titles):
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
    *,
    titles: bool = True,
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
            GridData.load(results_root, grid), Path(out_dir) / grid, log, titles=titles
        )
    return outcomes


def main(argv: Sequence[str] | None = None) -> int:
    parser = grid_parser("python -m paper_figures", __doc__)
    parser.add_argument("--out", default="paper_figures/out", help="output folder")
    add_titles_flag(parser)
    args = parser.parse_args(argv)
    grids = args.grids or list_grids(args.results)
    if not grids:
        print(f"no grids under {args.results}; nothing to draw")
        return 1
    outcomes = make_all(args.results, grids, args.out, titles=not args.no_titles)
    made = sum(len(o.made) for o in outcomes.values())
    print(f"{made} figure(s) written under {Path(args.out).resolve()}")
    return 0 if outcomes else 1
