"""Planning cost of a 1,000-cell grid: Hydra compose, per-cell compose + validate + hash, state lookup.

The grid is prune_sweep at scale=paper with its axes widened to 4 archs × 5 pruning methods × 10
ratios × 5 layers (1,000 cells); a results tree is pre-filled with a quarter of the cells done, a
few failed and a few incomplete, so the state lookup reads real files. Target: < 20 s in all.

    python benchmarks/plan_bench.py [--repeats 3] [--out benchmarks/results/plan.md]
    python benchmarks/plan_bench.py --smoke --out /tmp/plan.md   # a 13-cell grid, one repeat
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ablations import app, hydra_conf  # noqa: E402
from ablations.overrides import read_command_line  # noqa: E402
from ablations.plan import make_plan  # noqa: E402
from benchmarks._report import add_report_options, write_report  # noqa: E402
from core.io import write_json_atomic, write_yaml_atomic  # noqa: E402
from core.results import write_result  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "plan.md"
OVERRIDES = [
    "grid=prune_sweep",
    "scale=paper",
    "grid.axes.method=[random,easy,heuristic,scorer,oracle]",
    "grid.axes.ratio=[0.05,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.85]",
    "grid.axes.layer=[1,2,3,5,7]",
    "grid.axes.seed=[0]",
]
SMOKE_OVERRIDES = [
    "grid=prune_sweep",
    "grid.axes.method=[random,scorer]",
    "grid.axes.ratio=[0.3,0.5]",
    "grid.axes.layer=[0,1]",
    "grid.axes.seed=[0]",
]


def fill_tree(grid_dir: Path, cells: list, every: int = 4) -> dict[str, int]:
    """Mark every `every`-th cell done, a few failed and a few incomplete (real files)."""
    counts = {"done": 0, "failed": 0, "incomplete": 0}
    for i, cell in enumerate(cells):
        cell_dir = grid_dir / cell.cell_id
        if i % every == 0:
            state = "done"
        elif i % 97 == 1:
            state = "failed"
        elif i % 89 == 2:
            state = "incomplete"
        else:
            continue
        write_yaml_atomic(cell_dir / "config.yaml", cell.frozen())
        status = {
            "state": "failed" if state == "failed" else "running",
            "attempts": 1,
            "updated": "2000-01-01T00:00:00+00:00",
            "error": "boom",
            "job_ids": [],
        }
        if state == "done":
            status["state"] = "done"
            blocks = ("axes", "config", "metrics", "efficiency", "hardware", "timing")
            result = {"cell_id": cell.cell_id, "grid": cell.grid, "name": cell.name}
            result |= {"git_commit": "bench", "finished": "2000-01-01T00:00:00+00:00"}
            write_result(cell_dir, result | {b: {} for b in blocks})
        write_json_atomic(cell_dir / "status.json", status)
        counts[state] += 1
    return counts


def run_once(root: Path) -> dict[str, float | int]:
    t0 = time.perf_counter()
    cfg = hydra_conf.compose_launch(OVERRIDES)
    cli = read_command_line(cfg, OVERRIDES)
    spec = app.grid_spec(cfg, cli)
    t1 = time.perf_counter()
    cells = app.compose_cells(cfg, spec, cli)
    t2 = time.perf_counter()
    plan = make_plan(cells, root / spec.name, spec.axes)
    t3 = time.perf_counter()
    return {
        "cells": len(cells),
        "to_run": len(plan.to_run()),
        "hydra_s": t1 - t0,
        "cells_s": t2 - t1,
        "states_s": t3 - t2,
        "total_s": t3 - t0,
    }


def cold_dry_run(root: Path) -> float:
    """Wall seconds of `launch.py ... dry_run=true` in a fresh process (imports, FLOPs estimate)."""
    launch = Path(__file__).resolve().parents[1] / "ablations" / "launch.py"
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, str(launch), *OVERRIDES, "dry_run=true", f"results_root={root}"],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    add_report_options(parser, RESULTS, "a small grid, one repeat")
    args = parser.parse_args()
    if args.smoke:
        OVERRIDES[:] = SMOKE_OVERRIDES
        args.repeats = 1
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cfg = hydra_conf.compose_launch(OVERRIDES)
        cli = read_command_line(cfg, OVERRIDES)
        spec = app.grid_spec(cfg, cli)
        filled = fill_tree(root / spec.name, app.compose_cells(cfg, spec, cli))
        runs = [run_once(root) for _ in range(args.repeats)]
        cold = cold_dry_run(root)
    med = {
        k: statistics.median(r[k] for r in runs)
        for k in ("hydra_s", "cells_s", "states_s", "total_s")
    }
    cells, to_run = runs[0]["cells"], runs[0]["to_run"]
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    import hydra
    import submitit

    text = f"""# Planning benchmark: a {cells}-cell grid

What is timed (median of {args.repeats} runs in one process, after one untimed warm-up plan that also
fills the results tree): composing the launcher config with Hydra, composing + validating
(`ExperimentConfig.from_dict`) + hashing every cell, and classifying every cell against a results
tree holding {filled["done"]} done, {filled["failed"]} failed and {filled["incomplete"]} incomplete
cells ({to_run} left to run). Grid: `{" ".join(OVERRIDES)}`.

| step | seconds |
|---|---:|
| Hydra compose (launch.yaml + grid + scale + arch) | {med["hydra_s"]:.3f} |
| compose + validate + hash {cells} cells | {med["cells_s"]:.3f} |
| state lookup of {cells} cells in the results tree | {med["states_s"]:.3f} |
| **total** | **{med["total_s"]:.3f}** |

Target: < 20 s in all; per cell {1e3 * med["total_s"] / cells:.2f} ms. The same plan from the
command line in a fresh process (`launch.py ... dry_run=true`: Python/torch imports, registries,
plan, analytic-FLOPs cost estimate of the cells to run, printing) takes {cold:.2f} s wall.

Machine: {platform.platform()}; CPU: {cpu}, {os.cpu_count()} logical cores (shared with other
jobs); python {platform.python_version()}, hydra {hydra.__version__}, submitit {submitit.__version__}.

Reproduce: `python benchmarks/plan_bench.py`
"""
    write_report(args.out, text)


if __name__ == "__main__":
    main()
