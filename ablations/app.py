"""The launcher's steps, callable without `@hydra.main` (tests compose and call `main` directly).

launch: resolve the grid → compose and validate every cell → classify against the results tree,
reading only (dry run, or nothing to run: print and stop; a finished grid on read-only storage can
be re-checked) → choose the backend (ablations.backends.BACKENDS) and check its settings → check
devices and manifests (ablations.checks) → take the grid lock, classify again and claim the cells
to run (ablations.claims) → trash (force) → write plan.json, freeze config.yaml, record this
launcher in jobs.json, mark pending → release the grid lock → the backend runs or submits the
claimed cells (recording job ids) → summary (+ collect for runs that waited). status / collect
read the tree only. Every error a user can cause is one message and exit code 2 (no traceback).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

from ablations import hydra_conf
from ablations.backends import BACKENDS, LaunchSettings, choose_backend
from ablations.backends.base import Stage
from ablations.backends.torchrun import dry_run_note
from ablations.cells import CellSpec, Composer
from ablations.checks import PrecheckError, precheck
from ablations.claims import Claims, held_by
from ablations.collect import collect
from ablations.estimate import dry_run_line
from ablations.grid import GridSpec, resolve_grid
from ablations.jobs import grid_live_jobs
from ablations.overrides import CommandLine, plain, read_command_line
from ablations.plan import Plan, cost_estimate, make_plan, render
from ablations.state import move_to_trash, write_pending
from ablations.status import print_status, summarize
from core.config import SECTIONS
from core.lease import LEASE_S, Lease, LeaseTimeout
from core.results import (
    CONFIG_FILE,
    PLAN_FILE,
    STALE_S,
    ResultsError,
    State,
    grid_lock,
    read_plan,
    record_jobs,
    write_config,
)

ACTIONS = ("launch", "status", "collect")
TRACEBACK_ENV = "ABLATIONS_TRACEBACK"  # set (e.g. =1) to see the traceback of a user error
# bad input: grid/cell/profile/config/results-tree errors (all ValueError subclasses), missing
# files, a lock that cannot be had
USER_ERRORS = (ValueError, FileNotFoundError, LeaseTimeout)


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
        if os.environ.get(TRACEBACK_ENV):
            raise
        print(f"error: {exc}")
        return 2
    except OSError as exc:  # read-only or full storage, permissions
        if os.environ.get(TRACEBACK_ENV):
            raise
        print(f"error: {storage_message(exc)}")
        return 2


def conf_problem(conf_dir: Path) -> str | None:
    """A YAML syntax error in the launcher's config folder as `file:line:column: problem` (hydra
    would print a traceback for it); None when every file parses."""
    import yaml

    for path in sorted(conf_dir.rglob("*.yaml")):
        try:
            yaml.safe_load(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            from core.io import utf8_problem

            return utf8_problem(path) or f"{path}: not UTF-8"
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
            what = getattr(exc, "problem", None) or str(exc)
            return f"{where}: YAML syntax error ({what}). Fix: correct the file."
    return None


def storage_message(exc: OSError) -> str:
    where = exc.filename or "the results tree"
    return (
        f"{where}: cannot write ({exc.strerror or exc}). Fix: make results_root writable (or "
        "free space there), or point results_root= at writable storage; action=status and "
        "dry_run=true only read."
    )


def _collect_dir(cfg: Any) -> Path | None:
    out = cfg.get("collect_dir")
    return Path(str(out)).expanduser().resolve() if out else None


def settings(cfg: Any, stale_s: float) -> LaunchSettings:
    return LaunchSettings(
        cell_fn=str(cfg.cell_fn),
        backend=plain(cfg.backend),
        wait=bool(cfg.get("wait")),
        stale_s=stale_s,
        lease_s=float(cfg.get("lease_s") or LEASE_S),
    )


def plan_grid(
    cfg: Any, cells: list[CellSpec], grid_dir: Path, spec: GridSpec, stale_s: float
) -> Plan:
    live = grid_live_jobs(grid_dir)
    return make_plan(
        cells, grid_dir, spec.axes, bool(cfg.retry_failed), bool(cfg.force), live, stale_s
    )


def launch(cfg: Any, spec: GridSpec, cli: CommandLine, grid_dir: Path, stale_s: float) -> int:
    t0 = time.perf_counter()
    cells = compose_cells(cfg, spec, cli)
    plan = plan_grid(cfg, cells, grid_dir, spec, stale_s)  # reads only
    planned = time.perf_counter() - t0
    run = settings(cfg, stale_s)
    backend = choose_backend(run.backend)
    if cfg.dry_run:
        print(render(plan, cost_estimate([pc.cell for pc in plan.to_run()])))
        if cfg.get("estimate", True):
            print(dry_run_line([pc.cell for pc in plan.to_run()]), flush=True)
        if note := dry_run_note(spec.resources, backend, run.cell_fn):
            print(note)
        try:  # what a real launch would refuse, shown without refusing
            precheck([pc.cell for pc in plan.to_run()], backend, bool(cfg.get("precheck", True)))
        except PrecheckError as exc:
            print(f"warning: {exc}")
        print(f"dry run: planned {len(cells)} cells in {planned:.2f}s; nothing submitted.")
        return 0
    submit = BACKENDS[backend](run, spec)  # validates the backend settings before any write
    if not plan.to_run():
        return nothing_to_run(plan)
    precheck([pc.cell for pc in plan.to_run()], backend, data=bool(cfg.get("precheck", True)))
    claims = Claims(run.lease_s)
    try:
        with grid_lock(grid_dir, run.lease_s) as lock:
            plan = plan_grid(cfg, cells, grid_dir, spec, stale_s)  # again, now that it is ours
            claim_cells(plan, claims)
            todo = prepare_tree(plan, backend, lock)
        if not todo:
            return nothing_to_run(plan)
        print(render(plan))
        print(f"backend {backend}: {len(todo)} cells", flush=True)
        waited = submit(stages_of(plan), grid_dir, claims)
    finally:
        claims.close()
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


def nothing_to_run(plan: Plan) -> int:
    """Print the plan; write nothing but a plan.json whose cells changed (best effort)."""
    print(render(plan))
    print(f"nothing to run for grid {plan.grid}.")
    try:
        old = read_plan(plan.grid_dir)
    except ResultsError:
        old = None
    if old is not None and [c["cell_id"] for c in old["cells"]] == [c.cell_id for c in plan.cells]:
        return 0
    try:
        plan.write()
    except OSError as exc:
        print(f"note: {plan.grid_dir / PLAN_FILE} not updated ({exc.strerror or exc})")
    return 0


def claim_cells(plan: Plan, claims: Claims) -> None:
    """Claim every cell to run; one whose claim a live holder took meanwhile is not run."""
    for pc in plan.to_run():
        cell_dir = plan.grid_dir / pc.cell_id
        if not claims.take(cell_dir):
            pc.run, pc.state = False, State.RUNNING
            pc.reason = f"running (not resubmitted): held by {held_by(cell_dir)}"


def prepare_tree(plan: Plan, backend: str, lock: Lease) -> list[Path]:
    """Under the grid lock and the cells' claims: trash forced cells, write plan.json, freeze
    the configs of cells to run, record this launcher as their holder in jobs.json, then mark
    them pending."""
    dirs: list[Path] = []
    lock.ensure()
    for pc in plan.to_run():
        cell_dir = plan.grid_dir / pc.cell_id
        if pc.reason.startswith("force") and cell_dir.exists():
            print(f"force: moved {pc.cell.name} to {move_to_trash(cell_dir)}")
        dirs.append(cell_dir)
    plan.write()
    for pc, cell_dir in zip(plan.to_run(), dirs, strict=True):
        if pc.refreeze or not (cell_dir / CONFIG_FILE).is_file():
            write_config(cell_dir, pc.cell.frozen())
    if dirs:
        lock.ensure()
        record_jobs(plan.grid_dir, backend, dict.fromkeys((d.name for d in dirs), None))
    for cell_dir in dirs:
        write_pending(cell_dir)
    return dirs
