"""Real SLURM (slurm/single_node.sh up): job arrays, requeue with resume, idempotent re-launch."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from ablations import app, hydra_conf
from ablations.jobs import sinfo_answers
from core.io import read_jsonl
from tests.launcher_cells import expected_value

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(
        not sinfo_answers(5.0), reason="no SLURM controller (slurm/single_node.sh up)"
    ),
]

CELL_FN = "cell_fn=tests.launcher_cells:count_cell"


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", ""))  # restored afterwards
    monkeypatch.delenv("LAUNCHER_TEST_FAIL", raising=False)
    monkeypatch.delenv("LAUNCHER_TEST_STEP_S", raising=False)
    monkeypatch.setenv("WANDB_MODE", "disabled")


def launch(root: Path, *overrides: str) -> int:
    args = [
        "grid=smoke",
        f"results_root={root}",
        "backend=slurm",
        "backend.profile=local",
        "backend.poll_s=1",
        "collect=false",
        *overrides,
    ]
    return app.main(hydra_conf.compose_launch(args), args)


def wait_until(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def test_array_grid_finishes_and_relaunch_submits_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert launch(tmp_path, CELL_FN, "wait=true") == 0
    grid_dir = tmp_path / "smoke"
    plan = json.loads((grid_dir / "plan.json").read_text())
    manifest = json.loads((grid_dir / "jobs.json").read_text())
    array_ids = set()
    for entry in plan["cells"]:
        result = json.loads((grid_dir / entry["cell_id"] / "result.json").read_text())
        assert result["value"] == expected_value(6, 0)
        job = manifest["cells"][entry["cell_id"]]
        assert job["backend"] == "slurm"
        array_ids.add(job["job_id"].split("_")[0])
    assert len(array_ids) == 1  # one sbatch array for the grid
    capsys.readouterr()
    assert launch(tmp_path, CELL_FN, "wait=true") == 0
    assert "nothing to run" in capsys.readouterr().out
    assert json.loads((grid_dir / "jobs.json").read_text()) == manifest


def test_requeued_job_resumes_from_its_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAUNCHER_TEST_STEP_S", "0.25")
    steps = 40
    assert launch(tmp_path, CELL_FN, "grid.axes.method=[random]", f"train.steps={steps}") == 0
    grid_dir = tmp_path / "smoke"
    ((cell_id, job),) = json.loads((grid_dir / "jobs.json").read_text())["cells"].items()
    ckpt = grid_dir / cell_id / "checkpoints" / "last.json"
    wait_until(
        lambda: ckpt.is_file() and json.loads(ckpt.read_text())["step"] >= 4,
        120,
        "the first checkpoints",
    )
    subprocess.run(["scontrol", "requeue", job["job_id"]], check=True, timeout=30)
    result_path = grid_dir / cell_id / "result.json"
    wait_until(result_path.is_file, 240, "the requeued job to finish")
    starts = [a["start_step"] for a in read_jsonl(grid_dir / cell_id / "attempts.jsonl")]
    assert len(starts) == 2 and starts[0] == 0 and starts[1] >= 4
    assert json.loads(result_path.read_text())["value"] == expected_value(steps, 0)
    status = json.loads((grid_dir / cell_id / "status.json").read_text())
    assert status["state"] == "done" and status["attempts"] == 2


@pytest.mark.skipif(importlib.util.find_spec("core.cell") is None, reason="no core.cell yet")
def test_real_runner_through_slurm(tmp_path: Path) -> None:
    assert (
        launch(
            tmp_path,
            "wait=true",
            "train.steps=3",
            f"data.data_root={tmp_path / 'data'}",
            "data.synthetic_train=24",
            "data.synthetic_val=16",
        )
        == 0
    )
    plan = json.loads((tmp_path / "smoke" / "plan.json").read_text())
    for entry in plan["cells"]:
        result = json.loads((tmp_path / "smoke" / entry["cell_id"] / "result.json").read_text())
        assert result["cell_id"] == entry["cell_id"]


def test_protocol_queues_the_whole_dag_with_afterok_dependencies(tmp_path: Path) -> None:
    """One launch submits the bases and, per base, its dependents with --dependency=afterok on
    the base's job; the dependents run only after their base finished."""
    protocol = (
        "+grid.protocol.base.train.steps=3",
        "+grid.protocol.finetune.train.steps=2",
        "grid.axes.seed=[0,1]",
    )
    assert launch(tmp_path, CELL_FN, *protocol) == 0  # returns once sbatch answered
    grid_dir = tmp_path / "smoke"
    plan = {c["cell_id"]: c for c in json.loads((grid_dir / "plan.json").read_text())["cells"]}
    jobs = json.loads((grid_dir / "jobs.json").read_text())["cells"]
    for cell_id, entry in plan.items():
        if entry["axes"]["protocol"] == "base":
            continue
        base_id = read_init_cell(grid_dir / cell_id)
        base_job = jobs[base_id]["job_id"]
        shown = subprocess.run(
            ["scontrol", "show", "job", jobs[cell_id]["job_id"]],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
        # queued behind its base (the dependency disappears from scontrol once satisfied)
        assert f"afterok:{base_job}" in shown or (grid_dir / base_id / "result.json").is_file()
    wait_until(
        lambda: all((grid_dir / c / "result.json").is_file() for c in plan), 300, "the whole DAG"
    )
    for cell_id, entry in plan.items():
        if entry["axes"]["protocol"] != "base":
            result = json.loads((grid_dir / cell_id / "result.json").read_text())
            base = json.loads(
                (grid_dir / read_init_cell(grid_dir / cell_id) / "result.json").read_text()
            )
            assert result["base_value"] == base["value"]  # it started after its base was done


def read_init_cell(cell_dir: Path) -> str:
    import yaml

    return yaml.safe_load((cell_dir / "config.yaml").read_text())["train"]["init_cell"]
