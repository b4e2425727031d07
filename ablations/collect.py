"""Tables and figures of a grid, via `analysis.report.write_grid_outputs` (imported lazily)."""

from __future__ import annotations

import importlib
from pathlib import Path


def collect(results_root: Path, grid: str, out_dir: Path | None = None) -> int:
    """Write the grid's tables/figures and print where they are; 0 on success or a skip."""
    try:
        report = importlib.import_module("analysis.report")
    except ImportError as exc:
        print(f"collect skipped: analysis.report does not import ({exc}).", flush=True)
        return 0
    write = getattr(report, "write_grid_outputs", None)
    if write is None:
        print("collect skipped: analysis.report has no write_grid_outputs.", flush=True)
        return 0
    try:
        paths = write(results_root, grid, out_dir)
    except Exception as exc:  # the results stay valid; report the problem, do not hide it
        print(f"collect FAILED for grid {grid}: {type(exc).__name__}: {exc}", flush=True)
        return 1
    print(f"collect: {len(paths)} outputs for grid {grid}:", flush=True)
    for name, path in sorted(paths.items()):
        print(f"  {name}: {path}", flush=True)
    return 0
