"""The full grid report: analysis's tables and HTML with the paper figures embedded.

`python -m paper_figures.report --results results --grid prune_sweep [--grid ...] [--out DIR]
[--no-figures] [--no-titles] [--wandb-log MODE]` (the options of `python -m analysis`); `write_report` is the launcher's collect.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from analysis import cli
from analysis.report import write_grid_outputs
from paper_figures.make_all import make_grid_figures


def write_report(
    results_root: str | Path,
    grid: str,
    out_dir: str | Path | None = None,
    *,
    wandb_path: str | None = None,
    wandb_log: str = "auto",
    log: Callable[[str], None] = print,
) -> dict[str, Path]:
    """`analysis.report.write_grid_outputs` with every paper figure (default out: _analysis),
    mirrored to the grid's W&B analysis run when its cells logged to W&B (`wandb_log`)."""
    return write_grid_outputs(
        results_root,
        grid,
        out_dir,
        figures=make_grid_figures,
        wandb_path=wandb_path,
        wandb_log=wandb_log,
        log=log,
    )


def main(argv: Sequence[str] | None = None) -> int:
    return cli.main(argv, figures=make_grid_figures, prog="python -m paper_figures.report")


if __name__ == "__main__":
    raise SystemExit(main())
