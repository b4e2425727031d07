"""Never two writers: leases (core.lease), the grid lock and cell claims, and several launchers on
one grid, started together or staggered, inline and local (tests.launcher_cells:count_cell)."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ablations import app, hydra_conf
from core.io import read_jsonl, write_json_atomic
from core.lease import LOST_EXIT, Lease, read_holders
from core.results import claim_path, grid_lock_path, read_jobs
from tests.launcher_cells import count_under_lease, expected_value, record_many

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
GRID = ["grid=smoke", "cell_fn=tests.launcher_cells:count_cell", "collect=false"]
STEPS = 6  # the smoke grid's train.steps


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LAUNCHER_TEST_FAIL", raising=False)
    monkeypatch.delenv("LAUNCHER_TEST_STEP_S", raising=False)


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAUNCHER_TEST_")}
    return {**env, "PYTHONPATH": str(REPO), "WANDB_MODE": "disabled", **extra}


# ---- leases -----------------------------------------------------------------------------------
def test_a_lease_has_one_holder_and_is_free_again_once_released(tmp_path: Path) -> None:
    a, b = Lease(tmp_path / "x.lock"), Lease(tmp_path / "x.lock")
    assert a.try_acquire() and not b.try_acquire()
    assert [h.token for h in read_holders(a.path)] == [a.token]
    a.release()
    assert not a.path.exists() and b.try_acquire()
    assert not a.beat() and b.beat()
    assert sorted(os.listdir(tmp_path)) == ["x.lock"]  # no temp or break dirs left behind


HOLD = """
import sys, time
from core.lease import HEARTBEAT, Lease, exit_on_loss
lease = Lease(sys.argv[1], lease_s=float(sys.argv[2]), on_lost=exit_on_loss)
lease.acquire()
HEARTBEAT.add(lease)
print("held", flush=True)
while True:
    lease.ensure()
    with open(sys.argv[3], "a") as f:
        f.write("write\\n")
    time.sleep(0.05)
"""


def hold(path: Path, lease_s: float, log: Path) -> subprocess.Popen[str]:
    """A process that takes the lease at `path`, beats it and appends to `log` under it."""
    proc = subprocess.Popen(
        [PYTHON, "-c", HOLD, str(path), str(lease_s), str(log)],
        stdout=subprocess.PIPE,
        text=True,
        env=child_env(),
        cwd=REPO,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def writes(log: Path) -> int:
    return log.read_text().count("write") if log.exists() else 0


def test_a_killed_holder_is_taken_over_at_once(tmp_path: Path) -> None:
    proc = hold(tmp_path / "x.lock", 60.0, tmp_path / "log")
    contender = Lease(tmp_path / "x.lock")
    assert not contender.try_acquire()  # alive
    proc.kill()
    proc.wait()
    assert contender.try_acquire()  # its pid is gone (same process space): no waiting


def test_a_frozen_holder_loses_the_lease_after_it_and_stops_without_writing(tmp_path: Path) -> None:
    log = tmp_path / "log"
    proc = hold(tmp_path / "x.lock", 1.0, log)
    proc.send_signal(signal.SIGSTOP)  # alive but silent: no heartbeat any more
    try:
        contender = Lease(tmp_path / "x.lock")
        assert not contender.try_acquire()  # its pid exists and its last beat is recent
        contender.acquire(timeout_s=30)  # watched for a whole lease without a beat: taken over
        before = writes(log)
    finally:
        proc.send_signal(signal.SIGCONT)
    assert proc.wait(timeout=30) == LOST_EXIT  # woke up, found its record gone, stopped
    # at most the one write it was already past its check for (the residual window)
    assert writes(log) - before <= 1
    assert [h.token for h in read_holders(contender.path)] == [contender.token]


def test_an_expired_record_from_another_host_is_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    other = Lease(path, lease_s=5.0)
    assert other.try_acquire()
    record = path / other.record_name
    record.write_text(
        json.dumps({"host": "elsewhere", "space": "elsewhere", "pid": 1, "lease_s": 5})
    )
    contender = Lease(path, skew_s=5.0)
    assert not contender.try_acquire()  # fresh: its pid cannot be checked from here
    past = time.time() - 11.0  # older than lease + skew
    os.utime(record, (past, past))
    assert contender.try_acquire()
    assert not other.beat()  # the old holder learns it lost the lease


def test_a_worker_adopts_the_claim_its_launcher_hands_over(tmp_path: Path) -> None:
    path = tmp_path / "c.claim"
    launcher, worker, stranger = Lease(path), Lease(path, "worker"), Lease(path, "worker")
    assert launcher.try_acquire()
    assert not stranger.try_acquire(adopt="not-the-token")
    assert worker.try_acquire(adopt=launcher.token)
    assert [h.role for h in read_holders(path)] == ["worker"]
    assert not launcher.beat()  # its record went with the hand-over
    worker.release()
    assert not path.exists()


def test_a_breaker_that_died_mid_break_does_not_block_takeovers(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    dead = Lease(path)
    assert dead.try_acquire()
    (path / dead.record_name).write_text(json.dumps({"space": "elsewhere"}))
    past = time.time() - 600
    os.utime(path / dead.record_name, (past, past))
    breaker = Lease(tmp_path / ".x.lock.break", "breaker")
    assert breaker.try_acquire()
    (breaker.path / breaker.record_name).write_text(json.dumps({"space": "elsewhere"}))
    os.utime(breaker.path / breaker.record_name, (past, past))
    contender = Lease(path)
    assert not contender.try_acquire()  # clears the dead break lock on the way ...
    assert contender.try_acquire()  # ... and takes over the next time
    assert not breaker.path.exists()


def test_processes_racing_for_a_lease_exclude_each_other(tmp_path: Path) -> None:
    counter = tmp_path / "counter"
    counter.write_text("0")
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=count_under_lease, args=(str(tmp_path / "x.lock"), str(counter), 15))
        for _ in range(4)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * 4
    assert int(counter.read_text()) == 4 * 15


def test_concurrent_jobs_json_merges_lose_no_entry(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=record_many, args=(str(tmp_path), w)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * 3
    assert len(read_jobs(tmp_path)["cells"]) == 30


# ---- several launchers on one grid ------------------------------------------------------------
def start_launcher(root: Path, backend: str, *extra: str, **env: str) -> subprocess.Popen[str]:
    args = [*GRID, f"results_root={root}", f"backend={backend}"]
    if backend == "local":
        args += ["backend.max_parallel=2", "backend.poll_s=0.2"]
    args += extra
    return subprocess.Popen(
        [PYTHON, str(REPO / "ablations" / "launch.py"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=child_env(**env),
        cwd=REPO,
    )


def smoke_cells(root: Path) -> list[Path]:
    plan = json.loads((root / "smoke" / "plan.json").read_text())
    return [root / "smoke" / c["cell_id"] for c in plan["cells"]]


@pytest.mark.parametrize(
    ("backend", "stagger_s"), [("inline", 0.0), ("inline", 1.0), ("local", 0.0), ("local", 1.0)]
)
def test_launchers_started_together_or_staggered_train_each_cell_once(
    backend: str, stagger_s: float, tmp_path: Path
) -> None:
    procs = []
    for _ in range(3):
        procs.append(start_launcher(tmp_path, backend, LAUNCHER_TEST_STEP_S="0.1"))
        time.sleep(stagger_s)
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], "\n".join(outputs)
    cells = smoke_cells(tmp_path)
    assert len(cells) == 3
    for cell in cells:
        attempts = read_jsonl(cell / "attempts.jsonl")
        rows = read_jsonl(cell / "metrics.jsonl")
        assert len(attempts) == 1, (cell.name, attempts, outputs)  # trained exactly once
        assert [r["step"] for r in rows if r["phase"] == "train"] == list(range(1, STEPS + 1))
        assert len([r for r in rows if r["phase"] == "eval"]) == 1  # one evaluation
        status = json.loads((cell / "status.json").read_text())
        assert (status["state"], status["attempts"]) == ("done", 1)
        assert json.loads((cell / "result.json").read_text())["value"] == expected_value(STEPS, 0)
        assert not claim_path(cell).exists()  # every claim released
    assert not grid_lock_path(tmp_path / "smoke").exists()


def launch(root: Path, *overrides: str) -> int:
    args = [*GRID, f"results_root={root}", "backend=inline", *overrides]
    return app.main(hydra_conf.compose_launch(args), args)


@pytest.mark.parametrize("how", ["killed", "frozen"])
def test_a_launcher_that_dies_or_freezes_holding_the_grid_lock_blocks_nobody(
    how: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Killed: its pid is gone, the next launcher takes the lock at once. Frozen (SIGSTOP): the
    next one watches it for its lease (1 s here) and takes over; woken up, the old holder stops."""
    grid_dir = tmp_path / "smoke"
    holder = hold(grid_lock_path(grid_dir), 1.0, tmp_path / "log")
    holder.send_signal(signal.SIGKILL if how == "killed" else signal.SIGSTOP)
    if how == "killed":
        time.sleep(0.5)  # dead (a zombie until reaped: dead all the same)
    try:
        assert launch(tmp_path) == 0
    finally:
        holder.send_signal(signal.SIGCONT)
    assert holder.wait(timeout=30) == (-signal.SIGKILL if how == "killed" else LOST_EXIT)
    for cell in smoke_cells(tmp_path):
        assert json.loads((cell / "result.json").read_text())["value"] == expected_value(STEPS, 0)
    out = capsys.readouterr().out
    assert ("waiting for the grid lock" in out) == (how == "frozen")


def test_a_cell_claimed_by_a_live_worker_elsewhere_is_left_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A claim beats the heartbeat rules: even with a status that looks dead, a held cell is not
    prepared, queued or run, and its folder is not written."""
    assert launch(tmp_path) == 0
    cell = smoke_cells(tmp_path)[1]
    (cell / "result.json").unlink()
    write_json_atomic(cell / "status.json", {"state": "running", "updated": "2000-01-01"})
    jobs = read_jobs(tmp_path / "smoke")  # its inline launcher (this test process) is gone
    jobs["cells"][cell.name]["job_id"] = "inline-999999999"
    write_json_atomic(tmp_path / "smoke" / "jobs.json", jobs)
    worker = Lease(claim_path(cell), "worker", job="4711")
    assert worker.try_acquire()
    capsys.readouterr()
    before = (cell / "status.json").read_bytes()
    assert launch(tmp_path) == 0
    out = capsys.readouterr().out
    assert "nothing to run" in out and "held by worker" in out
    assert (cell / "status.json").read_bytes() == before
    assert launch(tmp_path, "action=status") == 0
    assert "running=1" in capsys.readouterr().out
    worker.release()
    assert launch(tmp_path) == 0  # free again: the cell resumes
    assert json.loads((cell / "result.json").read_text())["value"] == expected_value(STEPS, 0)


# ---- the local backend tracks and signals the worker ------------------------------------------
def wait_for_worker(cell: Path, min_step: int, timeout_s: float = 120) -> int:
    """The pid of the worker holding the cell's claim, once it has reached `min_step`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        workers = [h for h in read_holders(claim_path(cell)) if h.role == "worker"]
        rows = read_jsonl(cell / "metrics.jsonl") if (cell / "metrics.jsonl").exists() else []
        if workers and len(rows) >= min_step:
            return workers[0].pid
        time.sleep(0.1)
    raise AssertionError(f"no worker of {cell.name} reached step {min_step}")


def planned_cells(root: Path, timeout_s: float = 60) -> list[Path]:
    deadline = time.monotonic() + timeout_s
    while not (root / "smoke" / "plan.json").exists():
        assert time.monotonic() < deadline, "the launcher wrote no plan"
        time.sleep(0.1)
    return smoke_cells(root)


def test_local_workers_killed_or_stopped_resume_and_an_orphaned_worker_is_waited_for(
    tmp_path: Path,
) -> None:
    """Three cells, one signal each while it runs: SIGKILL to the worker (out of memory), SIGTERM
    to the worker, SIGKILL to submitit's wrapper. Killed and stopped cells end interrupted (not
    failed) and a plain relaunch resumes them from their checkpoints; the orphaned worker is
    tracked by its claim and finishes its cell, which is never started a second time."""
    steps = 30  # ≈ 6 s per cell: time to signal all three while they run
    proc = start_launcher(
        tmp_path,
        "local",
        "backend.max_parallel=3",
        f"train.steps={steps}",
        LAUNCHER_TEST_STEP_S="0.2",
    )
    killed, stopped, orphaned = planned_cells(tmp_path)
    worker_pids = {cell: wait_for_worker(cell, 2) for cell in (killed, stopped, orphaned)}
    wrapper = {c: (read_jobs(tmp_path / "smoke")["cells"][c.name]) for c in (orphaned,)}
    assert wrapper[orphaned]["job_id"] == str(worker_pids[orphaned])  # jobs.json names the worker
    controller = wrapper[orphaned]["history"][-1]["job_id"]  # the wrapper's pid, recorded first
    os.kill(worker_pids[killed], signal.SIGKILL)
    os.kill(worker_pids[stopped], signal.SIGTERM)
    os.kill(int(controller), signal.SIGKILL)
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 1, out  # two cells did not finish ...
    assert "FAILED" not in out and "failed=0" in out, out  # ... and none of them failed
    status = {c: json.loads((c / "status.json").read_text()) for c in (killed, stopped)}
    assert status[killed]["state"] == "interrupted"
    assert "died without a word" in status[killed]["error"]
    assert status[stopped]["state"] == "interrupted"
    assert "SIGTERM" in status[stopped]["error"]
    assert json.loads((orphaned / "result.json").read_text())["value"] == expected_value(steps, 0)
    assert len(read_jsonl(orphaned / "attempts.jsonl")) == 1

    relaunch = start_launcher(tmp_path, "local", f"train.steps={steps}")  # no retry_failed
    out = relaunch.communicate(timeout=300)[0]
    assert relaunch.returncode == 0, out
    for cell in (killed, stopped):
        starts = [a["start_step"] for a in read_jsonl(cell / "attempts.jsonl")]
        assert len(starts) == 2 and starts[1] >= 2, starts  # resumed from its checkpoint
        assert json.loads((cell / "result.json").read_text())["value"] == expected_value(steps, 0)
    assert len(read_jsonl(orphaned / "attempts.jsonl")) == 1


def test_a_local_failure_reports_the_real_exception_and_how_to_retry(tmp_path: Path) -> None:
    proc = start_launcher(tmp_path, "local", LAUNCHER_TEST_FAIL="jd-random-r0.5-l1-s0")
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 1
    assert "FAILED: RuntimeError: injected failure in jd-random-r0.5-l1-s0 at step 1" in out
    assert "retry_failed=true" in out


# ---- the fault-injection benchmark ------------------------------------------------------------
def test_fault_injection_smoke_finds_results_equal_to_an_uninterrupted_run(tmp_path: Path) -> None:
    out = tmp_path / "fault_injection.md"
    proc = subprocess.run(
        [PYTHON, str(REPO / "benchmarks" / "fault_injection.py"), "--smoke", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        env=child_env(),
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = [ln for ln in out.read_text().splitlines() if ln.startswith(("| inline", "| local"))]
    assert len(rows) == 2 and all(row.endswith("| 3 | equal |") for row in rows), rows


@pytest.mark.parametrize("step", ["claim_cells", "prepare_tree"])
def test_a_launcher_that_plans_while_another_prepares_the_same_cells_runs_none_twice(
    step: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race of launchers started together: B plans while A has planned but written nothing
    yet (every cell still looks new to B). Forced here: at `step` of its launch, A starts B and
    lets it go as far as it can (until it waits for the grid lock, or ends). Before claiming, A's
    grid lock stops B; after claiming, A's claims do. Without either, B and then A would both
    train every cell."""
    monkeypatch.setenv("LAUNCHER_TEST_STEP_S", "0.05")
    original = getattr(app, step)
    rivals: list[tuple[subprocess.Popen[str], str]] = []

    def after_a_rival(*args: object, **kwargs: object) -> object:
        if not rivals:
            rival = start_launcher(tmp_path, "inline", LAUNCHER_TEST_STEP_S="0.05")
            assert rival.stdout is not None
            seen = []
            for line in rival.stdout:  # until it blocks on our lock, or ends
                seen.append(line)
                if "waiting for the grid lock" in line:
                    break
            rivals.append((rival, "".join(seen)))
        return original(*args, **kwargs)

    monkeypatch.setattr(app, step, after_a_rival)
    assert launch(tmp_path) == 0
    rival, seen = rivals[0]
    out = seen + rival.communicate(timeout=300)[0]
    assert rival.returncode == 0, out
    assert ("waiting for the grid lock" in out) == (step == "claim_cells"), out
    assert "running (not resubmitted)" in out, out  # B found A's claims and left the cells
    for cell in smoke_cells(tmp_path):
        assert len(read_jsonl(cell / "attempts.jsonl")) == 1, (cell.name, out)
        assert json.loads((cell / "status.json").read_text())["attempts"] == 1
