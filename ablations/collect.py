"""`action=collect`: tables, figures and the HTML report of a grid (`paper_figures.report`)."""

from __future__ import annotations

from pathlib import Path


def collect(results_root: Path, grid: str, out_dir: Path | None = None) -> int:
    """Write the grid's tables/figures and print where they are; 0 on success."""
    # imported here: pandas and matplotlib load only when a launch collects
    from paper_figures.report import write_report

    try:
        paths = write_report(results_root, grid, out_dir)
    except Exception as exc:  # the results stay valid; report the problem, do not hide it
        print(f"collect FAILED for grid {grid}: {type(exc).__name__}: {exc}", flush=True)
        return 1
    print(f"collect: {len(paths)} outputs for grid {grid}:", flush=True)
    for name, path in sorted(paths.items()):
        print(f"  {name}: {path}", flush=True)
    return 0
