"""The launcher's steps, callable without `@hydra.main` (tests compose and call `main` directly).

launch: resolve the grid → compose and validate every cell → classify against the results tree →
(dry run: print and stop) → choose the backend and check its settings → trash (force) → write
plan.json, freeze config.yaml, mark pending → run inline/local or submit to SLURM → jobs.json →
summary (+ collect for runs that waited). status / collect read the tree only.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

from ablations import hydra_conf
from ablations.backends import choose_backend
from ablations.backends.inline import run_inline
from ablations.backends.local import run_local
from ablations.backends.slurm import slurm_parameters, submit_slurm
from ablations.cells import Cell, Composer
from ablations.collect import collect
from ablations.grid import GridSpec, resolve_grid
from ablations.jobs import grid_live_jobs, live_jobs, record_jobs, sinfo_answers
from ablations.overrides import CommandLine, plain, read_command_line
from ablations.plan import Plan, cost_estimate, make_plan, render
from ablations.profiles import load_profile
from ablations.state import RUNNING, STATES, move_to_trash, write_pending
from ablations.status import grid_states, print_status
from core.config import SECTIONS
from core.io import write_yaml_atomic

ACTIONS = ("launch", "status", "collect")
# bad input: grid/cell/profile/config errors (all ValueError subclasses) and missing files
USER_ERRORS = (ValueError, FileNotFoundError)


@cache
def arch_group(name: str) -> dict[str, Any]:
    """Content of `conf/arch/<name>.yaml` (global package); unknown names only set fusion.arch, so
    validation reports them against the registry."""
    from omegaconf import OmegaConf

    path = hydra_conf.CONF_DIR / "arch" / f"{name}.yaml"
    if not path.is_file():
        return {"fusion": {"arch": name}}
    return OmegaConf.to_container(OmegaConf.load(path), resolve=True)  # type: ignore[return-value]


def grid_spec(cfg: Any, cli: CommandLine) -> GridSpec:
    grid = plain(cfg.get("grid"))
    return resolve_grid(
        grid,
        str(cfg.get("scale_name") or "tiny"),
        cli.grid,
        cli.collapsed_axes(),
        hydra_conf.available("grid"),
    )


def compose_cells(cfg: Any, spec: GridSpec, cli: CommandLine) -> list[Cell]:
    base = {name: plain(cfg[name]) for name in SECTIONS}
    return Composer(spec, base, arch_group, cli.section_values()).compose_all()


def results_dir(cfg: Any) -> Path:
    return Path(str(cfg.results_root)).expanduser().resolve()


def main(cfg: Any, overrides: Sequence[str]) -> int:
    """Run one launcher invocation; returns the exit code (2 = bad input, nothing done)."""
    action = str(cfg.get("action", "launch"))
    if action not in ACTIONS:
        print(f"action={action!r}: unknown. Fix: use one of {ACTIONS}.")
        return 2
    try:
        cli = read_command_line(cfg, overrides)
        spec = grid_spec(cfg, cli)
        root = results_dir(cfg)
        grid_dir = root / spec.name
        stale_s = 60.0 * float(cfg.get("stale_min", 30))
        if action == "status":
            print_status(grid_dir, stale_s)
            return 0
        if action == "collect":
            return collect(root, spec.name, _collect_dir(cfg))
        return launch(cfg, spec, cli, grid_dir, stale_s)
    except USER_ERRORS as exc:
        print(f"error: {exc}")
        return 2


def _collect_dir(cfg: Any) -> Path | None:
    out = cfg.get("collect_dir")
    return Path(str(out)).expanduser().resolve() if out else None


def launch(cfg: Any, spec: GridSpec, cli: CommandLine, grid_dir: Path, stale_s: float) -> int:
    t0 = time.perf_counter()
    cells = compose_cells(cfg, spec, cli)
    live = grid_live_jobs(grid_dir)
    plan = make_plan(
        cells, grid_dir, spec.axes, bool(cfg.retry_failed), bool(cfg.force), live, stale_s
    )
    planned = time.perf_counter() - t0
    if cfg.dry_run:
        print(render(plan, cost_estimate([pc.cell for pc in plan.to_run()])))
        print(f"dry run: planned {len(cells)} cells in {planned:.2f}s; nothing submitted.")
        return 0
    print(render(plan))
    backend = choose_backend(plain(cfg.backend))
    submit = _prepare_backend(
        cfg, backend, spec, stale_s
    )  # validates profiles before anything is written
    todo = prepare_tree(plan)
    if not todo:
        print(f"nothing to run for grid {spec.name}.")
        return 0
    print(f"backend {backend}: {len(todo)} cells", flush=True)
    waited = submit(todo, grid_dir)
    if not waited:
        return 0
    not_done = summarize(grid_dir, {d.name for d in todo}, stale_s)
    if cfg.collect:
        collect(grid_dir.parent, spec.name, _collect_dir(cfg))
    return 1 if not_done else 0


def prepare_tree(plan: Plan) -> list[Path]:
    """Trash forced cells, write plan.json, freeze configs of cells to run, mark them pending."""
    plan.grid_dir.mkdir(parents=True, exist_ok=True)
    dirs: list[Path] = []
    for pc in plan.to_run():
        cell_dir = plan.grid_dir / pc.cell_id
        if pc.reason.startswith("force") and cell_dir.exists():
            print(f"force: moved {pc.cell.name} to {move_to_trash(cell_dir)}")
        dirs.append(cell_dir)
    plan.write()
    for pc, cell_dir in zip(plan.to_run(), dirs, strict=True):
        cell_dir.mkdir(parents=True, exist_ok=True)
        if not (cell_dir / "config.yaml").is_file():
            write_yaml_atomic(cell_dir / "config.yaml", pc.cell.frozen())
        write_pending(cell_dir)
    return dirs


def _prepare_backend(cfg: Any, backend: str, spec: GridSpec, stale_s: float) -> Any:
    """A `submit(cell_dirs, grid_dir) -> waited` closure with every setting checked up front."""
    cell_fn = str(cfg.cell_fn)
    settings = plain(cfg.backend)
    if backend == "inline":

        def submit_inline(dirs: list[Path], grid_dir: Path) -> bool:
            record_jobs(grid_dir, "inline", {d.name: f"inline-{os.getpid()}" for d in dirs})
            run_inline(dirs, cell_fn)
            return True

        return submit_inline
    if backend == "local":
        res = spec.resources
        gpus = int(res.get("gpus") or 0)
        params = {
            "timeout_min": float(settings.get("timeout_min") or res["timeout_min"]),
            "signal_delay_s": int(settings.get("signal_delay_s", 30)),
            "tasks_per_node": int(res.get("tasks") or max(gpus, 1)),
            "gpus_per_node": gpus,
            "nodes": 1,
        }

        def submit_local(dirs: list[Path], grid_dir: Path) -> bool:
            run_local(
                dirs,
                cell_fn,
                grid_dir / "_submitit",
                params,
                int(settings.get("max_parallel", 2)),
                int(settings.get("max_num_timeout", 3)),
                float(settings.get("poll_s", 1.0)),
                on_submit=lambda d, job: record_jobs(grid_dir, "local", {d.name: job}),
            )
            return True

        return submit_local
    profile = load_profile(str(settings.get("profile") or ""))
    params = slurm_parameters(profile, spec.resources, f"vidprune-{spec.name}")
    if not sinfo_answers(float(settings.get("probe_timeout_s") or 5)):
        raise ValueError(
            "backend=slurm: `sinfo` does not answer (no SLURM controller reachable). Fix: run on a "
            "login node, start one with slurm/single_node.sh up, or use backend=inline/local."
        )
    poll_s = float(settings.get("poll_s", 10))

    def submit(dirs: list[Path], grid_dir: Path) -> bool:
        submitted = submit_slurm(dirs, cell_fn, grid_dir / "_submitit", profile, params)
        record_jobs(grid_dir, "slurm", submitted)
        first, last = next(iter(submitted.values())), list(submitted.values())[-1]
        print(
            f"submitted {len(submitted)} cells to SLURM (jobs {first} … {last}); manifest "
            f"{grid_dir / 'jobs.json'}"
        )
        if not cfg.get("wait"):
            print(
                f"check: python ablations/launch.py grid={spec.name} action=status "
                f"results_root={grid_dir.parent}"
            )
            return False
        wait_for(grid_dir, list(submitted), poll_s, stale_s)
        return True

    return submit


def wait_for(grid_dir: Path, cell_ids: list[str], poll_s: float, stale_s: float) -> None:
    """Block until none of the cells is queued or running (SLURM liveness from squeue)."""
    while True:
        live = live_jobs()
        rows = [r for r in grid_states(grid_dir, live, stale_s) if r["cell_id"] in set(cell_ids)]
        busy = [r for r in rows if r["state"] == RUNNING]
        if not busy:
            return
        time.sleep(poll_s)


def summarize(grid_dir: Path, ran: set[str], stale_s: float) -> int:
    """Print the grid's counts and this run's failures; the number of this run's cells not done."""
    rows = grid_states(grid_dir, grid_live_jobs(grid_dir), stale_s)
    counts = dict.fromkeys(STATES, 0)
    for row in rows:
        counts[row["state"]] += 1
    print(f"grid {grid_dir.name}: " + "  ".join(f"{k}={v}" for k, v in counts.items()))
    bad = [r for r in rows if r["cell_id"] in ran and r["state"] != "done"]
    for r in bad:
        print(f"  {r['state']}: {r['name']} ({r['cell_id']}): {r['error']}")
    return len(bad)
