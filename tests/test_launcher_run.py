"""Launcher runs with the inline backend and the test cell function: results tree, skip/resume/
retry/force, frozen-config checks, dry run, status and collect."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ablations import app, hydra_conf
from core.io import read_jsonl, read_yaml, write_json_atomic
from core.results import Liveness, classify, write_result
from tests.launcher_cells import expected_value

CELL_FN = "cell_fn=tests.launcher_cells:count_cell"
RANDOM = "jd-random-r0.5-l1-s0"


def launch(root: Path, *overrides: str) -> int:
    args = [
        "grid=smoke",
        f"results_root={root}",
        CELL_FN,
        "backend=inline",
        "collect=false",
        *overrides,
    ]
    return app.main(hydra_conf.compose_launch(args), args)


def cells_by_name(root: Path) -> dict[str, Path]:
    plan = json.loads((root / "smoke" / "plan.json").read_text())
    return {c["name"]: root / "smoke" / c["cell_id"] for c in plan["cells"]}


def result(cell_dir: Path) -> dict[str, Any]:
    return json.loads((cell_dir / "result.json").read_text())


def status(cell_dir: Path) -> dict[str, Any]:
    return json.loads((cell_dir / "status.json").read_text())


@pytest.fixture
def no_injection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LAUNCHER_TEST_FAIL", raising=False)
    monkeypatch.delenv("LAUNCHER_TEST_STEP_S", raising=False)


@pytest.mark.usefixtures("no_injection")
def test_inline_run_failure_skip_and_retry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LAUNCHER_TEST_FAIL", RANDOM)
    assert launch(tmp_path) == 1  # a failed cell makes the exit code non-zero ...
    cells = cells_by_name(tmp_path)
    out = capsys.readouterr().out
    assert "failed=1" in out and "injected failure" in out
    for name, cell_dir in cells.items():  # ... but never stops the other cells
        if name == RANDOM:
            assert not (cell_dir / "result.json").exists()
            assert status(cell_dir)["state"] == "failed"
            assert "injected failure" in status(cell_dir)["error"]
        else:
            assert result(cell_dir)["value"] == expected_value(6, 0)
            assert status(cell_dir)["state"] == "done"
    plan = json.loads((tmp_path / "smoke" / "plan.json").read_text())
    assert plan["grid"] == "smoke" and len(plan["cells"]) == 3
    assert plan["axes"]["method"] == ["none", "random", "scorer"]
    manifest = json.loads((tmp_path / "smoke" / "jobs.json").read_text())
    assert set(manifest["cells"]) == {d.name for d in cells.values()}

    # re-launch: done cells are skipped, the failed one is not retried without retry_failed
    monkeypatch.delenv("LAUNCHER_TEST_FAIL")
    done_before = {
        n: (d / "result.json").stat().st_mtime_ns for n, d in cells.items() if n != RANDOM
    }
    assert launch(tmp_path) == 0
    assert "nothing to run" in capsys.readouterr().out
    assert not (cells[RANDOM] / "result.json").exists()

    # a changed runtime-only key (the fix of a failure such as train.device) retries it without
    # retry_failed; done cells are untouched
    assert launch(tmp_path, "train.num_threads=1") == 0
    out = capsys.readouterr().out
    assert "retry, runtime keys changed: train.num_threads: 0 → 1" in out
    assert result(cells[RANDOM])["value"] == expected_value(6, 0)
    assert read_yaml(cells[RANDOM] / "config.yaml")["train"]["num_threads"] == 1
    starts = [a["start_step"] for a in read_jsonl(cells[RANDOM] / "attempts.jsonl")]
    assert starts == [0, 1]
    for name, mtime in done_before.items():
        assert (cells[name] / "result.json").stat().st_mtime_ns == mtime


@pytest.mark.usefixtures("no_injection")
def test_retry_failed_resumes_a_failed_cell(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LAUNCHER_TEST_FAIL", RANDOM)
    assert launch(tmp_path) == 1
    cells = cells_by_name(tmp_path)
    monkeypatch.delenv("LAUNCHER_TEST_FAIL")
    done_before = {
        n: (d / "result.json").stat().st_mtime_ns for n, d in cells.items() if n != RANDOM
    }
    # retry_failed: the failed cell resumes from its checkpoint (failed after step 1)
    assert launch(tmp_path, "retry_failed=true") == 0
    assert result(cells[RANDOM])["value"] == expected_value(6, 0)
    starts = [a["start_step"] for a in read_jsonl(cells[RANDOM] / "attempts.jsonl")]
    assert starts == [0, 1]
    assert status(cells[RANDOM])["attempts"] == 2
    for name, mtime in done_before.items():  # done results never rewritten
        assert (cells[name] / "result.json").stat().st_mtime_ns == mtime


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def set_running(cell_dir: Path, updated: datetime, step: int) -> None:
    (cell_dir / "result.json").unlink()
    write_json_atomic(
        cell_dir / "checkpoints" / "last.json", {"step": step, "value": expected_value(step, 0)}
    )
    write_json_atomic(
        cell_dir / "status.json",
        {
            **status(cell_dir),
            "state": "running",
            "step": step,
            "updated": updated.isoformat(timespec="seconds"),
        },
    )


@pytest.mark.usefixtures("no_injection")
def test_incomplete_resumes_running_is_skipped_and_only_runtime_changes_are_accepted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert launch(tmp_path) == 0
    cells = cells_by_name(tmp_path)
    grid_dir = tmp_path / "smoke"
    now = datetime.now(UTC)
    # killed launcher: fresh "running" status, but the inline process that ran it is gone
    killed = cells[RANDOM]
    set_running(killed, now, 3)
    # a cell this very process is "running": its process is alive, so it is left alone
    busy = cells["jd-scorer-r0.5-l1-s0"]
    set_running(busy, now, 2)
    # no process record at all (e.g. another host): a stale status means incomplete
    stale = cells["jd-none-r0-l0-s0"]
    set_running(stale, now - timedelta(hours=3), 4)
    manifest = json.loads((grid_dir / "jobs.json").read_text())
    manifest["cells"][killed.name]["job_id"] = f"inline-{dead_pid()}"
    manifest["cells"][busy.name]["job_id"] = f"inline-{os.getpid()}"
    del manifest["cells"][stale.name]
    write_json_atomic(grid_dir / "jobs.json", manifest)

    # a frozen key that is not runtime-only differs (hand-edited config.yaml): refused
    edited = read_yaml(stale / "config.yaml")
    edited["train"]["lr"] = 0.5
    write_json_atomic(stale / "config.yaml", edited)
    assert launch(tmp_path) == 2
    out = capsys.readouterr().out
    assert "train.lr" in out and "force=true" in out and "Traceback" not in out
    edited["train"]["lr"] = read_yaml(killed / "config.yaml")["train"]["lr"]
    write_json_atomic(stale / "config.yaml", edited)

    # runtime-only changes keep the ids: the cells resume with the new values frozen
    runtime = ("logging.wandb=disabled", "train.num_threads=1", "logging.progress=off")
    assert launch(tmp_path, "dry_run=true", *runtime) == 0
    out = capsys.readouterr().out
    assert "done=0  running=1  failed=0  incomplete=2" in out
    assert "resume, runtime keys changed: logging.progress" in out

    assert launch(tmp_path, *runtime) == 0
    for cell_dir, step in ((killed, 3), (stale, 4)):
        assert result(cell_dir)["value"] == expected_value(6, 0)
        starts = [a["start_step"] for a in read_jsonl(cell_dir / "attempts.jsonl")]
        assert starts == [0, step]
        frozen = read_yaml(cell_dir / "config.yaml")
        assert frozen["logging"]["wandb"] == "disabled" and frozen["train"]["num_threads"] == 1
    assert not (busy / "result.json").exists()  # still running elsewhere: never started twice


def test_classify_liveness_rules(tmp_path: Path) -> None:
    cell = tmp_path / "c"
    write_json_atomic(cell / "config.yaml", {})
    fresh = datetime.now(UTC).isoformat(timespec="seconds")
    old = (datetime.now(UTC) - timedelta(hours=1)).isoformat(timespec="seconds")
    write_json_atomic(
        cell / "status.json", {"state": "running", "updated": fresh, "host": socket.gethostname()}
    )

    def state(live: Liveness | None = None, stale_s: float = 1800.0) -> str:
        return classify(cell, live or Liveness(), stale_s).state

    assert state() == "running"  # recent, liveness unknown
    assert state(stale_s=0) == "incomplete"
    slurm = ("12_3",)
    assert state(Liveness(queued=frozenset({"12_3"}), job_ids=slurm)) == "running"  # squeue knows
    assert state(Liveness(queued=frozenset({"99"}), job_ids=slurm)) == "incomplete"  # job gone
    assert state(Liveness(pids=(os.getpid(),))) == "running"
    assert state(Liveness(pids=(dead_pid(),))) == "incomplete"
    assert state(Liveness(pids=(dead_pid(),), host="elsewhere")) == "running"  # heartbeat decides
    write_json_atomic(cell / "status.json", {"state": "pending", "updated": old})
    assert state() == "incomplete"  # handed over, never started, nobody alive
    assert state(Liveness(pids=(os.getpid(),), host=socket.gethostname())) == "pending"  # queued
    write_json_atomic(cell / "status.json", {"state": "failed", "error": "x"})
    assert state() == "failed"
    (cell / "result.json").write_text('{"cell_id": "c", "grid')  # torn: not done
    assert state() == "incomplete"
    write_json_atomic(cell / "result.json", {})  # valid JSON, not a result: not done either
    assert state() == "incomplete"
    blocks = ("axes", "config", "metrics", "efficiency", "hardware", "timing")
    valid = {"cell_id": "c", "grid": "g", "name": "c", "git_commit": "x", "finished": fresh}
    write_result(cell, valid | {b: {} for b in blocks})
    assert state() == "done"
    assert classify(tmp_path / "missing").state == "new"


@pytest.mark.usefixtures("no_injection")
def test_cells_a_live_launcher_holds_are_not_run_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A second launcher started while the first still has cells queued (pending, not yet
    submitted) leaves them alone; once that launcher is dead they resume."""
    assert launch(tmp_path) == 0
    cells = cells_by_name(tmp_path)
    grid_dir = tmp_path / "smoke"
    queued = cells[RANDOM]
    (queued / "result.json").unlink()
    write_json_atomic(queued / "status.json", {**status(queued), "state": "pending", "host": ""})
    manifest = json.loads((grid_dir / "jobs.json").read_text())
    entry = manifest["cells"][queued.name]
    entry.update(job_id=None, launcher_pid=os.getpid(), host=socket.gethostname())
    write_json_atomic(grid_dir / "jobs.json", manifest)
    capsys.readouterr()
    assert launch(tmp_path) == 0
    assert "nothing to run" in capsys.readouterr().out  # pending, its launcher alive: skipped
    assert not (queued / "result.json").exists()
    entry["launcher_pid"] = dead_pid()
    write_json_atomic(grid_dir / "jobs.json", manifest)
    assert launch(tmp_path) == 0
    assert result(queued)["value"] == expected_value(6, 0)


@pytest.mark.usefixtures("no_injection")
def test_force_moves_cells_to_trash_and_reruns(tmp_path: Path) -> None:
    assert launch(tmp_path) == 0
    cells = cells_by_name(tmp_path)
    old = {n: result(d)["finished"] for n, d in cells.items()}
    (cells[RANDOM] / "marker.txt").write_text("old run")
    time.sleep(1.1)  # a distinct `finished` second for the rerun
    assert launch(tmp_path, "force=true") == 0
    trash = tmp_path / "smoke" / "_trash"
    moved = sorted(p.name for p in trash.iterdir())
    assert len(moved) == 3
    assert {m.split("-")[0] for m in moved} == {d.name for d in cells.values()}
    assert any((trash / m / "marker.txt").is_file() for m in moved)
    for name, cell_dir in cells.items():
        assert not (cell_dir / "marker.txt").exists()
        assert result(cell_dir)["finished"] != old[name]
        assert len(read_jsonl(cell_dir / "attempts.jsonl")) == 1


def test_dry_run_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["grid=prune_sweep", f"results_root={tmp_path}", "dry_run=true"]
    assert app.main(hydra_conf.compose_launch(args), args) == 0
    out = capsys.readouterr().out
    assert "33 cells  new=33" in out and "to run: 33" in out
    # 3 bases × (400 caption + 200 QA) + 18 fine-tunes × 100 + 12 zero-shot × 0
    assert "cost: 33 cells, 3600 train steps" in out
    assert not any(tmp_path.iterdir())


@pytest.mark.usefixtures("no_injection")
def test_frozen_config_and_status_action(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LAUNCHER_TEST_FAIL", RANDOM)
    launch(tmp_path)
    cells = cells_by_name(tmp_path)
    frozen = read_yaml(cells["jd-scorer-r0.5-l1-s0"] / "config.yaml")
    assert frozen["cell"]["name"] == "jd-scorer-r0.5-l1-s0"
    assert frozen["cell"]["overrides"]["pruning.method"] == "scorer"
    assert frozen["pruning"]["ratio"] == 0.5 and frozen["train"]["steps"] == 6
    capsys.readouterr()
    assert launch(tmp_path, "action=status") == 0
    out = capsys.readouterr().out
    assert "done=2" in out and "failed=1" in out and "injected failure" in out


@pytest.mark.usefixtures("no_injection")
def test_collect_writes_the_grid_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert launch(tmp_path) == 0
    capsys.readouterr()
    assert launch(tmp_path, "action=collect") == 0
    out = capsys.readouterr().out
    report = tmp_path / "smoke" / "_analysis" / "report.html"
    assert f"html: {report}" in out and report.is_file()
    assert "efficiency_md" in out and "smoke" in report.read_text()
