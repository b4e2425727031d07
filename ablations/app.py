"""The launcher's steps, callable without `@hydra.main` (tests compose and call `main` directly).

launch: resolve the grid → compose and validate every cell → classify against the results tree →
(dry run: print and stop) → choose the backend (ablations.backends.BACKENDS) and check its settings
→ trash (force) → write plan.json, freeze config.yaml, record this launcher in jobs.json, mark
pending → the backend runs or submits (recording job ids) → summary (+ collect for runs that
waited). status / collect read the tree only.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

from ablations import hydra_conf
from ablations.backends import BACKENDS, LaunchSettings, choose_backend
from ablations.backends.base import Stage
from ablations.cells import CellSpec, Composer
from ablations.collect import collect
from ablations.grid import GridSpec, resolve_grid
from ablations.jobs import grid_live_jobs
from ablations.overrides import CommandLine, plain, read_command_line
from ablations.plan import Plan, cost_estimate, make_plan, render
from ablations.state import move_to_trash, write_pending
from ablations.status import print_status, summarize
from core.config import SECTIONS
from core.results import CONFIG_FILE, STALE_S, record_jobs, write_config

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


def compose_cells(cfg: Any, spec: GridSpec, cli: CommandLine) -> list[CellSpec]:
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
        stale_min = cfg.get("stale_min")
        stale_s = STALE_S if stale_min is None else 60.0 * float(stale_min)
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


def settings(cfg: Any, stale_s: float) -> LaunchSettings:
    return LaunchSettings(
        cell_fn=str(cfg.cell_fn),
        backend=plain(cfg.backend),
        wait=bool(cfg.get("wait")),
        stale_s=stale_s,
    )


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
    run = settings(cfg, stale_s)
    backend = choose_backend(run.backend)
    submit = BACKENDS[backend](run, spec)  # validates the backend settings before any write
    todo = prepare_tree(plan, backend)
    if not todo:
        print(f"nothing to run for grid {spec.name}.")
        return 0
    print(f"backend {backend}: {len(todo)} cells", flush=True)
    waited = submit(stages_of(plan), grid_dir)
    if not waited:
        return 0
    not_done = summarize(grid_dir, {d.name for d in todo}, stale_s)
    if cfg.collect:
        collect(grid_dir.parent, spec.name, _collect_dir(cfg))
    return 1 if not_done else 0


def stages_of(plan: Plan) -> list[Stage]:
    """The plan's stages as the backends take them (cell folders, each cell's base)."""
    return [
        Stage(
            name,
            [plan.grid_dir / pc.cell_id for pc in cells],
            {pc.cell_id: pc.cell.base_id for pc in cells if pc.cell.base_id},
        )
        for name, cells in plan.stages()
    ]


def prepare_tree(plan: Plan, backend: str) -> list[Path]:
    """Trash forced cells, write plan.json, freeze configs of cells to run, record this launcher
    as their holder in jobs.json, then mark them pending."""
    plan.grid_dir.mkdir(parents=True, exist_ok=True)
    dirs: list[Path] = []
    for pc in plan.to_run():
        cell_dir = plan.grid_dir / pc.cell_id
        if pc.reason.startswith("force") and cell_dir.exists():
            print(f"force: moved {pc.cell.name} to {move_to_trash(cell_dir)}")
        dirs.append(cell_dir)
    plan.write()
    for pc, cell_dir in zip(plan.to_run(), dirs, strict=True):
        if not (cell_dir / CONFIG_FILE).is_file():
            write_config(cell_dir, pc.cell.frozen())
    if dirs:
        record_jobs(plan.grid_dir, backend, dict.fromkeys((d.name for d in dirs), None))
    for cell_dir in dirs:
        write_pending(cell_dir)
    return dirs
