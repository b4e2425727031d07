"""Kill a running grid at random moments, K times per backend, and check that the final results
equal those of an uninterrupted run (never two writers, never a lost or silently wrong cell).

Each backend (inline, local) first runs the smoke grid uninterrupted with the launcher test cell
(`tests.launcher_cells:count_cell`: deterministic values, a checkpoint after every step). Then K
rounds: two launchers start on one results tree (the second a little later), and at a random
moment within the uninterrupted run's duration one or both are hit by a random fault:
  group-kill      SIGKILL to the launcher's whole process group (a crashed node: workers die too)
  launcher-kill   SIGKILL to the launcher only (its local workers live on, orphaned)
  sigterm         SIGTERM to the launcher's process group (a scheduler stopping it)
  worker-kill     SIGKILL to a worker holding a cell's claim (out of memory)
the other launcher is hit too or left to finish. Then plain re-launches (no retry_failed, no
force) run until every cell is done. Each round uses a fresh results tree, so every fault hits
a running grid. Checked per cell: the result value and step count equal the uninterrupted
run's, status done, the attempts' start steps never go back (each attempt resumed from the last
checkpoint: no concurrent writer), no claim or grid lock left.

    python benchmarks/fault_injection.py [--kills K] [--backends inline,local] [--seed S]
                                         [--out benchmarks/results/fault_injection.md] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from core.io import read_jsonl  # noqa: E402
from core.lease import read_holders  # noqa: E402
from core.results import LOCKS_DIR, read_result  # noqa: E402

FAULTS = ("group-kill", "launcher-kill", "sigterm", "worker-kill")
GRID = "smoke"


@dataclass
class Outcome:
    backend: str
    kills: int
    faults: dict[str, int] = field(default_factory=dict)
    relaunches: int = 0
    cells: int = 0
    problems: list[str] = field(default_factory=list)


def launcher(root: Path, backend: str, steps: int, step_s: float) -> subprocess.Popen[str]:
    """One launcher process on the smoke grid, in a process group of its own."""
    args = [
        f"grid={GRID}",
        "cell_fn=tests.launcher_cells:count_cell",
        "collect=false",
        f"results_root={root}",
        f"backend={backend}",
        f"train.steps={steps}",
        "lease_s=5",
    ]
    if backend == "local":
        args += ["backend.max_parallel=2", "backend.poll_s=0.2"]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LAUNCHER_TEST_")},
        "PYTHONPATH": str(REPO),
        "WANDB_MODE": "disabled",
        "LAUNCHER_TEST_STEP_S": str(step_s),
    }
    return subprocess.Popen(
        [sys.executable, str(REPO / "ablations" / "launch.py"), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=REPO,
        start_new_session=True,
    )


def cell_dirs(grid_dir: Path) -> list[Path]:
    plan = json.loads((grid_dir / "plan.json").read_text())
    return [grid_dir / c["cell_id"] for c in plan["cells"]]


def workers(grid_dir: Path) -> list[int]:
    locks = grid_dir / LOCKS_DIR
    if not locks.is_dir():
        return []
    return [
        h.pid
        for claim in sorted(locks.glob("*.claim"))
        for h in read_holders(claim)
        if h.role == "worker"
    ]


def strike(proc: subprocess.Popen[str], fault: str, grid_dir: Path, rng: random.Random) -> str:
    """Apply `fault` to a launcher (or one of the workers); the fault actually applied."""
    if fault == "worker-kill":
        pids = workers(grid_dir)
        if pids:
            _signal(rng.choice(pids), signal.SIGKILL, group=False)
            return fault
        fault = "group-kill"  # no worker runs right now (inline, or between cells)
    if proc.poll() is not None:
        return "none (already finished)"
    if fault == "launcher-kill":
        _signal(proc.pid, signal.SIGKILL, group=False)
    else:
        sig = signal.SIGTERM if fault == "sigterm" else signal.SIGKILL
        _signal(proc.pid, sig, group=True)
    return fault


def _signal(pid: int, sig: signal.Signals, group: bool) -> None:
    try:
        if group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def run_to_completion(root: Path, backend: str, steps: int, step_s: float, tries: int) -> int:
    """Plain re-launches until every planned cell is done (orphaned workers may still hold some
    cells: a launcher leaves those alone, so wait and launch again); the number of launches."""
    grid_dir = root / GRID
    for attempt in range(1, tries + 1):
        proc = launcher(root, backend, steps, step_s)
        proc.wait(timeout=600)
        if grid_dir.joinpath("plan.json").is_file() and all(
            read_result(d) is not None for d in cell_dirs(grid_dir)
        ):
            return attempt
        time.sleep(1.0)
    return tries + 1


def values(grid_dir: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for d in cell_dirs(grid_dir):
        result = read_result(d)
        out[d.name] = (result["value"], result["steps"]) if result else (-1, -1)
    return out


def check(grid_dir: Path, reference: dict[str, tuple[int, int]], outcome: Outcome) -> None:
    got = values(grid_dir)
    outcome.cells = len(got)
    if got != reference:
        outcome.problems.append(f"results differ: {got} != {reference}")
    for d in cell_dirs(grid_dir):
        status = json.loads((d / "status.json").read_text())
        if status["state"] != "done":
            outcome.problems.append(f"{d.name}: status {status['state']}")
        starts = [a["start_step"] for a in read_jsonl(d / "attempts.jsonl")]
        if starts != sorted(starts):
            outcome.problems.append(f"{d.name}: an attempt started behind another: {starts}")
    locks = grid_dir / LOCKS_DIR
    # wait for workers that finished their cell to drop their claims
    deadline = time.monotonic() + 30
    while locks.is_dir() and os.listdir(locks) and time.monotonic() < deadline:
        time.sleep(0.2)
    if locks.is_dir() and os.listdir(locks):
        outcome.problems.append(f"locks left behind: {sorted(os.listdir(locks))}")


def inject(backend: str, kills: int, steps: int, step_s: float, rng: random.Random) -> Outcome:
    """K rounds, each on a fresh results tree: two launchers, a fault at a random moment while
    the grid runs, plain re-launches to the end, and the check against the reference."""
    outcome = Outcome(backend, kills)
    with tempfile.TemporaryDirectory(prefix="fault-") as tmp:
        ref_root = Path(tmp) / "reference"
        start = time.monotonic()
        launcher(ref_root, backend, steps, step_s).wait(timeout=600)
        duration = time.monotonic() - start
        reference = values(ref_root / GRID)
        if any(v == (-1, -1) for v in reference.values()):
            outcome.problems.append(f"the uninterrupted run did not finish: {reference}")
            return outcome
        for round_ in range(kills):
            root = Path(tmp) / f"round{round_}"
            first = launcher(root, backend, steps, step_s)
            time.sleep(rng.uniform(0.0, 0.5))
            second = launcher(root, backend, steps, step_s)
            time.sleep(rng.uniform(0.3, 0.8 * duration))
            for proc in (first, second) if rng.random() < 0.5 else (rng.choice((first, second)),):
                applied = strike(proc, rng.choice(FAULTS), root / GRID, rng)
                outcome.faults[applied] = outcome.faults.get(applied, 0) + 1
            for proc in (first, second):
                try:
                    proc.wait(timeout=600)
                except subprocess.TimeoutExpired:
                    _signal(proc.pid, signal.SIGKILL, group=True)
                    outcome.problems.append(f"round {round_}: a launcher hung for 600 s")
            outcome.relaunches += run_to_completion(root, backend, steps, step_s, tries=10)
            before = len(outcome.problems)
            check(root / GRID, reference, outcome)
            outcome.problems[before:] = [f"round {round_}: {p}" for p in outcome.problems[before:]]
    return outcome


def report(outcomes: list[Outcome], args: argparse.Namespace) -> str:
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    lines = [
        f"## Fault injection, {stamp}",
        "",
        f"`python benchmarks/fault_injection.py --kills {args.kills} --backends "
        f"{','.join(args.backends)} --seed {args.seed} --steps {args.steps}`"
        + (" (smoke)" if args.smoke else ""),
        "",
        "Grid `smoke` (3 cells) with `tests.launcher_cells:count_cell`; each of the K rounds "
        "starts two launchers on a fresh results tree and hits one or both with a random fault "
        "at a random moment while the grid runs; then plain re-launches (no retry_failed, no "
        "force) until done. Equal = in every round, every cell's value and step count equal the "
        "uninterrupted run's, status done, attempts never behind each other, no lock left.",
        "",
        "| backend | K rounds | faults applied | re-launches (all rounds) | cells | outcome |",
        "|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        faults = ", ".join(f"{k} {v}" for k, v in sorted(o.faults.items())) or "none"
        verdict = "equal" if not o.problems else "DIFFERENT: " + "; ".join(o.problems)
        lines.append(
            f"| {o.backend} | {o.kills} | {faults} | {o.relaunches} | {o.cells} | {verdict} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10, help="fault rounds per backend (K)")
    parser.add_argument("--backends", type=lambda s: s.split(","), default=["inline", "local"])
    parser.add_argument("--steps", type=int, default=20, help="train.steps of every cell")
    parser.add_argument("--step-s", type=float, default=0.1, help="seconds per step")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="K=1, few steps (a test runs it)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/fault_injection.md")
    args = parser.parse_args(argv)
    if args.smoke:
        args.kills, args.steps, args.step_s = 1, 6, 0.1
    rng = random.Random(args.seed)
    outcomes = [inject(b, args.kills, args.steps, args.step_s, rng) for b in args.backends]
    text = report(outcomes, args)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "a" if args.out.exists() and not args.smoke else "w") as f:
        f.write(text + "\n")
    return 1 if any(o.problems for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
