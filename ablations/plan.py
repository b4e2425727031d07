"""The plan of one launch: each cell's state in the results tree, what to run, and what it costs.

Decisions: done → skip; running or pending (a live holder: its claim, job or process) → skip
(never two writers); new → run; incomplete → run (the runner resumes from its checkpoint); failed
→ run only with retry_failed, or when its runtime-only keys changed (the fix of a failure such as
`train.device=cuda` on a CPU machine: the frozen config is updated and the cell retried); with
force every existing dir except running ones is moved to `_trash/` and run anew. An incomplete
cell whose frozen config differs from the new one is refused (naming the changed keys) unless
force. Planning only reads the tree: the launcher re-plans under the grid lock before it writes.

Cells that start from a base cell (a grid protocol) form the second stage: they run after the first
stage (bases and cells without a base), and a cell whose base is failed and not retried is
blocked (not run, and not failed: it runs once its base is done).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ablations.cells import CellSpec, config_diff
from core.efficiency.flops import analytic_flops
from core.io import read_yaml
from core.results import (
    CONFIG_FILE,
    RESULT_FILE,
    RUNTIME_KEYS,
    STALE_S,
    State,
    classify_grid,
    count_states,
    format_counts,
    write_plan,
)


class PlanError(ValueError):
    """The plan cannot go ahead as asked (e.g. a frozen config changed)."""


@dataclass
class PlannedCell:
    cell: CellSpec
    state: str
    status: dict[str, Any] | None
    run: bool
    reason: str
    refreeze: bool = False  # failed with changed runtime-only keys: config.yaml is rewritten
    problems: tuple[str, ...] = ()  # unreadable files of the cell (named)

    @property
    def cell_id(self) -> str:
        return self.cell.cell_id


@dataclass
class Plan:
    grid: str
    grid_dir: Path
    axes: dict[str, list[Any]]
    cells: list[PlannedCell] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return count_states(c.state for c in self.cells)

    def to_run(self) -> list[PlannedCell]:
        return [c for c in self.cells if c.run]

    def stages(self) -> list[tuple[str, list[PlannedCell]]]:
        """The cells to run in launch order: those without a base, then those started from one."""
        first = [c for c in self.to_run() if not c.cell.base_id]
        second = [c for c in self.to_run() if c.cell.base_id]
        return [(name, cells) for name, cells in (("base", first), ("dependent", second)) if cells]

    def write(self) -> Path:
        entries = [c.cell.plan_entry() for c in self.cells]
        return write_plan(self.grid_dir, self.grid, self.axes, entries)


def make_plan(
    cells: list[CellSpec],
    grid_dir: Path,
    axes: dict[str, list[Any]],
    retry_failed: bool = False,
    force: bool = False,
    live_jobs: set[str] | None = None,
    stale_s: float = STALE_S,
) -> Plan:
    """Classify every cell against the results tree and decide what runs."""
    plan = Plan(grid=grid_dir.name, grid_dir=grid_dir, axes=axes)
    found = classify_grid(grid_dir, [c.cell_id for c in cells], live_jobs, stale_s)
    changed: list[str] = []
    for cell in cells:
        cell_dir = grid_dir / cell.cell_id
        found_cell = found[cell.cell_id]
        state, status = found_cell.state, found_cell.status
        diff = (
            frozen_changes(cell_dir, cell)
            if not force and state in (State.INCOMPLETE, State.FAILED)
            else {}
        )
        runtime_only = bool(diff) and all(k in RUNTIME_KEYS for k in diff)
        refreeze = False
        if state in (State.RUNNING, State.PENDING):
            run, reason = False, f"{state} (not resubmitted): {found_cell.reason}"
        elif force and state != State.NEW:
            run, reason = True, f"force (was {state})"
        elif state == State.DONE:
            run, reason = False, "done"
        elif state == State.NEW:
            run, reason = True, "new"
        elif runtime_only:  # the fix of a failure (train.device, a path) or a logging change
            run, refreeze = True, True
            verb = "resume" if state == State.INCOMPLETE else "retry"
            reason = f"{verb}, runtime keys changed: " + "; ".join(list(diff.values())[:4])
        elif state == State.FAILED and not retry_failed:
            run, reason = False, "failed (retry_failed=true re-runs it)"
        else:
            run, reason = True, "resume" if state == State.INCOMPLETE else "retry"
        if run and diff and not refreeze:
            changed.append(f"{cell.name} ({cell.cell_id}): " + "; ".join(list(diff.values())[:6]))
        problems = tuple(
            p for p in found_cell.problems if not p.startswith(str(cell_dir / RESULT_FILE))
        )
        plan.cells.append(PlannedCell(cell, state, status, run, reason, refreeze, problems))
    _block_on_bases(plan)
    if changed:
        raise PlanError(
            "the frozen config of existing cell(s) differs from the new one in keys that are not "
            "runtime-only (core.results.RUNTIME_KEYS), so resuming would mix two experiments:\n  "
            + "\n  ".join(changed)
            + "\nFix: relaunch with the original values, or force=true to move those cells to "
            "_trash/ and rerun."
        )
    return plan


def frozen_changes(cell_dir: Path, cell: CellSpec) -> dict[str, str]:
    """{key: `key: old → new`} where the frozen config differs from the new one (usually
    runtime-only keys: the others are in the cell id); PlanError naming the file when
    config.yaml cannot be read."""
    path = cell_dir / CONFIG_FILE
    try:
        frozen = read_yaml(path)
    except Exception as exc:  # yaml.YAMLError, OSError, UnicodeDecodeError
        raise PlanError(
            f"{path}: unreadable frozen config ({type(exc).__name__}: {exc}). Fix: restore it, or "
            f"relaunch with force=true to move cell {cell.name} to _trash/ and run it anew."
        ) from exc
    if not isinstance(frozen, dict):
        raise PlanError(f"{path}: not a frozen config. Fix: relaunch with force=true.")
    return config_diff(frozen, cell.frozen())


def _block_on_bases(plan: Plan) -> None:
    """A cell whose base will not be done (failed and not retried, or not planned) waits."""
    by_id = {c.cell_id: c for c in plan.cells}
    for pc in plan.cells:
        base = by_id.get(pc.cell.base_id) if pc.cell.base_id else None
        if not pc.run or base is None:
            continue
        coming = base.run or base.state in (State.DONE, State.RUNNING, State.PENDING)
        if not coming:
            hint = " (retry_failed=true re-runs it)" if base.state == State.FAILED else ""
            pc.run, pc.reason = False, f"blocked: its base {base.cell.name} is {base.state}{hint}"


def cost_estimate(cells: list[CellSpec]) -> dict[str, Any]:
    """Training steps and analytic compute of the given cells.

    Training FLOPs ≈ 3 × forward FLOPs per clip × batch size × steps (backward ≈ 2 × forward)."""
    steps = sum(c.steps for c in cells)
    out: dict[str, Any] = {"cells": len(cells), "train_steps": steps}
    total = 0.0
    per_clip: list[float] = []
    for c in cells:
        gflops = float(analytic_flops(c.config).total)
        per_clip.append(gflops)
        total += 3 * gflops * c.config.train.batch_size * c.steps
    out["fwd_gflops_per_clip_min"] = min(per_clip) if per_clip else 0.0
    out["fwd_gflops_per_clip_max"] = max(per_clip) if per_clip else 0.0
    out["train_pflops"] = total / 1e6
    return out


def render(plan: Plan, cost: dict[str, Any] | None = None, max_rows: int = 60) -> str:
    """The dry-run text: counts, the cells to run, the cost."""
    lines = [
        f"grid {plan.grid}: {len(plan.cells)} cells  {format_counts(plan.counts())}",
        f"results: {plan.grid_dir}",
    ]
    todo = plan.to_run()
    lines.append(f"to run: {len(todo)}")
    names = {c.cell_id: c.cell.name for c in plan.cells}
    shown = 0
    for stage, cells in plan.stages():
        after = " (each after its base)" if stage == "dependent" else ""
        lines.append(f" stage {stage}: {len(cells)} cells{after}")
        lines.append(f"  {'cell_id':<12} {'name':<32} {'state':<11} {'steps':>6}  reason")
        for pc in cells:
            if shown == max_rows:
                break
            shown += 1
            base = (
                f", after {names.get(pc.cell.base_id, pc.cell.base_id)}" if pc.cell.base_id else ""
            )
            lines.append(
                f"  {pc.cell_id:<12} {pc.cell.name:<32} {pc.state:<11} "
                f"{pc.cell.steps:>6}  {pc.reason}{base}"
            )
    if len(todo) > max_rows:
        lines.append(f"  ... and {len(todo) - max_rows} more")
    skipped = [pc for pc in plan.cells if not pc.run and pc.state not in (State.DONE,)]
    for pc in skipped[:max_rows]:
        why = (pc.status or {}).get("error") if pc.state == State.FAILED else pc.reason
        hint = " (retry_failed=true re-runs it)" if pc.state == State.FAILED else ""
        lines.append(f"  not run: {pc.cell.name} ({pc.cell_id}): {why}{hint}")
    for pc in plan.cells:
        for problem in pc.problems:
            fix = "rewritten when the cell runs" if pc.run else "left as it is"
            lines.append(f"  warning: {problem} ({pc.cell.name}: {fix})")
    if cost is not None:
        lines.append(
            f"cost: {cost['cells']} cells, {cost['train_steps']} train steps, "
            f"≈{cost['train_pflops']:.3g} PFLOPs of training "
            f"({cost['fwd_gflops_per_clip_min']:.3g}–{cost['fwd_gflops_per_clip_max']:.3g}"
            " fwd GFLOPs per clip)"
        )
    return "\n".join(lines)
