"""The report command: `python -m analysis --results results --grid prune_sweep [--grid ...]
[--out DIR]` writes the load report, tables (CSV/Markdown/LaTeX) and a single-file HTML report per
grid; `python -m paper_figures.report` is the same command with the paper figures added."""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Sequence
from pathlib import Path

from analysis.load import load_results
from analysis.report import FigureMaker, default_out_dir, write_grid_outputs
from analysis.wandb_log import MODES
from core.results import list_grids


def grid_parser(prog: str, description: str | None) -> argparse.ArgumentParser:
    """A parser with the `--results` root and the repeatable `--grid` every command takes."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--results", default="results", help="results root (default: results)")
    parser.add_argument(
        "--grid",
        action="append",
        dest="grids",
        help="grid to use (repeatable; default: every grid under --results)",
    )
    return parser


def add_titles_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-titles",
        action="store_true",
        help="figures without a headline (for a paper: each figure's caption is written beside "
        "it as <figure>.caption.txt and .caption.tex)",
    )


def main(
    argv: Sequence[str] | None = None,
    figures: FigureMaker | None = None,
    prog: str = "python -m analysis",
) -> int:
    parser = grid_parser(prog, __doc__)
    parser.add_argument(
        "--out",
        default=None,
        help="output folder (default: <results>/<grid>/_analysis; with several "
        "grids: <out>/<grid>)",
    )
    if figures is not None:
        parser.add_argument("--no-figures", action="store_true", help="tables and HTML only")
        add_titles_flag(parser)
    parser.add_argument(
        "--wandb",
        metavar="ENTITY/PROJECT",
        default=None,
        help="join W&B runs of the grid's group (only when online)",
    )
    parser.add_argument(
        "--wandb-log",
        choices=MODES,
        default="auto",
        help="log the table and figures as the grid's W&B analysis run (job_type=analysis, in "
        "the grid's group); auto: when the grid's cells logged to W&B, online with "
        "WANDB_API_KEY else offline; WANDB_MODE wins (default: auto)",
    )
    args = parser.parse_args(argv)
    if getattr(args, "no_figures", False):
        figures = None
    elif figures is not None and args.no_titles:
        figures = functools.partial(figures, titles=False)

    grids = args.grids or list_grids(args.results)
    _, report = load_results(args.results, grids or None)
    print(report.format())
    if report.empty and not report.grids:
        print("nothing to analyse", file=sys.stderr)
        return 1
    for grid in report.grids:
        if args.out is None:
            out = default_out_dir(args.results, grid)
        else:
            out = Path(args.out) / grid if len(report.grids) > 1 else Path(args.out)
        print(f"\n== {grid} ==")
        paths = write_grid_outputs(
            args.results,
            grid,
            out,
            figures=figures,
            wandb_path=args.wandb,
            wandb_log=args.wandb_log,
        )
        _print_paths(paths, out)
    return 0


def _print_paths(paths: dict[str, Path], out: Path) -> None:
    print(f"outputs in {out.resolve()}:")
    print(f"  HTML report   {paths['html']}")
    print(f"  load report   {paths['load_report']}")
    print(f"  cells (CSV)   {paths['cells_csv']}")
    tables = {k: p for k, p in paths.items() if k.endswith("_tex") and not k.startswith("figure_")}
    if tables:
        folder = next(iter(tables.values())).parent
        names = ",".join(p.stem for p in tables.values())
        print(f"  tables        {folder}/{{{names}}}.{{csv,md,tex}}")
    pngs = {p.stem: p for k, p in paths.items() if k.startswith("figure_") and k.endswith("_png")}
    if pngs:
        folder = next(iter(pngs.values())).parent
        print(f"  figures       {folder}/{{{','.join(sorted(pngs))}}}.{{pdf,png}}")
        print("  captions      beside each figure: <figure>.caption.{txt,tex}")
    if "wandb_record" in paths:
        print(f"  W&B run       {paths['wandb_record']} (the grid's analysis run)")
