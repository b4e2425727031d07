"""Multi-node cells through the launcher (backend=slurm, `grid.resources.nodes > 1`): the submitit
parameters and callables, the checks before submission, the dry run, and real torchrun runs of a
tiny cell on two simulated "nodes" of this machine (two node tasks as processes with the SLURM
environment each would see: node ranks 0 and 1, hosts [localhost, localhost])."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ablations import app, hydra_conf
from ablations.backends import torchrun
from ablations.backends.job import CellJob, TorchrunCellJob
from ablations.backends.slurm import cell_jobs, slurm_executor
from ablations.profiles import load_profile
from core.io import read_json, read_jsonl
from core.results import claim_holders, claim_path
from tests.cell_fixtures import cell_config, free_port, make_cell, write_dataset

REPO = Path(__file__).resolve().parents[1]
# A node task as submitit runs it; with REQUEUE_MARK set, a SIGUSR2 handler stands in for
# submitit's (node 0: checkpoint, requeue, then SystemExit(-1)).
NODE_TASK = """
import json, os, signal, sys
from ablations.backends.job import TorchrunCellJob

def requeue(signum, frame):
    open(os.environ["REQUEUE_MARK"], "w").write(signal.Signals(signum).name)
    sys.exit(-1)

if os.environ.get("REQUEUE_MARK"):
    signal.signal(signal.SIGUSR2, requeue)
print("RESULT", json.dumps(TorchrunCellJob(sys.argv[1], 1, int(sys.argv[2]), 20.0)()))
"""


# ---- submission ------------------------------------------------------------------------------
class Recorder:
    """Stands in for slurm_executor: builds the real SLURM executor (parameter names checked) and
    keeps the sbatch directives it would write and the submitted callables; answers job ids."""

    def __init__(self) -> None:
        self.sbatch: dict[str, str] = {}
        self.jobs: list[Any] = []

    def __call__(self, folder: Path, profile: Any, params: Any) -> Any:
        executor = slurm_executor(folder, profile, params)._executor  # submitit's SlurmExecutor
        text = executor._make_submission_file_text("python -m submitit.core._submit", "0")
        for line in text.splitlines():
            key, _, value = line.removeprefix("#SBATCH --").partition("=")
            if line.startswith("#SBATCH --"):
                self.sbatch[key] = value
        return self

    def submit_array(self, jobs: list[Any]) -> list[Any]:
        self.jobs += jobs
        return [type("Job", (), {"job_id": f"900_{i}"})() for i in range(len(jobs))]


def launch(tmp_path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    args = ["grid=smoke", f"results_root={tmp_path / 'results'}", "collect=false", *extra]
    code = app.main(hydra_conf.compose_launch(args), args)
    return code, capsys.readouterr().out


@pytest.fixture
def slurm_answers(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    recorder = Recorder()
    monkeypatch.setattr("ablations.backends.slurm.sinfo_answers", lambda timeout_s: True)
    monkeypatch.setattr("ablations.backends.slurm.slurm_executor", recorder)
    return recorder


SLURM = ["backend=slurm", "backend.profile=example_gpu_cluster"]


def test_a_multi_node_grid_is_submitted_as_one_torchrun_task_per_node(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], slurm_answers: Recorder
) -> None:
    code, out = launch(
        tmp_path, capsys, *SLURM, "grid.resources.nodes=4", "grid.resources.gpus=8",
        "backend.rdzv_port=29611",
    )  # fmt: skip
    assert code == 0, out
    d = slurm_answers.sbatch  # what sbatch is given
    assert (d["nodes"], d["ntasks-per-node"], d["gpus-per-node"]) == ("4", "1", "8")
    assert d["cpus-per-task"] == "64" and d["mem"] == "480GB"  # the whole node for its one task
    assert d["requeue"] == "" and d["signal"] == "USR2@120"  # submitit's requeue signal
    assert len(slurm_answers.jobs) == 3
    for job in slurm_answers.jobs:
        assert isinstance(job, TorchrunCellJob)
        assert (job.gpus_per_node, job.port) == (8, 29611)
        assert Path(job.cell_dir).parent == tmp_path / "results" / "smoke"
        fresh = job.checkpoint().function  # a requeue resubmits the same cell, fresh
        assert isinstance(fresh, TorchrunCellJob) and fresh is not job
        assert vars(fresh) == vars(job)
    manifest = read_json(tmp_path / "results" / "smoke" / "jobs.json")
    assert {j["job_id"] for j in manifest["cells"].values()} == {"900_0", "900_1", "900_2"}


def test_one_node_keeps_one_task_per_gpu(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], slurm_answers: Recorder
) -> None:
    code, out = launch(tmp_path, capsys, *SLURM, "grid.resources.gpus=8")
    assert code == 0, out
    d = slurm_answers.sbatch
    assert (d["nodes"], d["ntasks-per-node"], d["gpus-per-node"], d["cpus-per-task"]) == (
        "1", "8", "8", "8",
    )  # fmt: skip
    assert all(type(job) is CellJob for job in slurm_answers.jobs)
    assert "torchrun" not in out


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (["backend=inline"], "grid.resources.nodes=2: backend=inline runs cells on this machine"),
        (["backend=local"], "grid.resources.nodes=2: backend=local runs cells on this machine"),
        ([*SLURM, "grid.resources.gpus=0"], "grid.resources.gpus=0: a 2-node cell runs torchrun"),
        (
            [*SLURM, "+grid.resources.tasks=8"],
            "grid.resources.tasks=8: a 2-node cell runs one task",
        ),
        ([*SLURM, "cell_fn=tests.launcher_cells:count_cell"], "cell_fn='tests.launcher_cells:"),
        ([*SLURM, "backend.rdzv_port=80"], "backend.rdzv_port=80: outside 1024–65535"),
    ],
)
def test_what_a_multi_node_cell_cannot_be_is_refused_before_writing(
    settings: list[str],
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    slurm_answers: Recorder,
) -> None:
    code, out = launch(
        tmp_path, capsys, "grid.resources.nodes=2", "grid.resources.gpus=4", *settings
    )
    assert code == 2 and message in out and "Fix: " in out, out
    assert not (tmp_path / "results").exists() and not slurm_answers.jobs


def test_the_dry_run_says_nodes_times_gpus_through_torchrun(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nodes = ["grid.resources.nodes=2", "grid.resources.gpus=4", "dry_run=true", "estimate=false"]
    code, out = launch(tmp_path, capsys, *SLURM, *nodes)
    assert code == 0
    assert "each cell runs as 2 nodes × 4 GPUs through torchrun" in out and "warning" not in out
    code, out = launch(tmp_path, capsys, "backend=inline", *nodes)
    assert code == 0 and "warning: grid.resources.nodes=2: backend=inline" in out
    code, out = launch(tmp_path, capsys, *SLURM, "dry_run=true", "estimate=false")
    assert code == 0 and "torchrun" not in out


def test_the_slurm_job_factory_and_the_port_check() -> None:
    from ablations.backends.base import LaunchSettings

    settings = LaunchSettings("core.cell:run_cell", {"rdzv_port": "29700"}, lease_s=30)
    job = cell_jobs(settings, {"nodes": 2, "gpus": 2})(Path("/r/g/c"))
    assert isinstance(job, TorchrunCellJob) and (job.port, job.lease_s) == (29700, 30.0)
    assert type(cell_jobs(settings, {"nodes": 1, "gpus": 2})(Path("/r/g/c"))) is CellJob
    for bad in (1023, 65536, "x", True, 29500.5):
        with pytest.raises(ValueError, match="outside 1024–65535"):
            torchrun.check_port(bad)
    profile = load_profile("example_gpu_cluster")
    assert profile["gpus_per_node"] == 8


# ---- real torchrun runs ----------------------------------------------------------------------
def node_env(node: int, job_id: str) -> dict[str, str]:
    """What a node task of a 2-node job sees (SLURM variables read by submitit)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SUBMITIT_"))}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    env.update(
        SUBMITIT_EXECUTOR="slurm",
        SLURM_JOB_ID=job_id,
        SLURM_NTASKS="2",
        SLURM_JOB_NUM_NODES="2",
        SLURM_NODEID=str(node),
        SLURM_PROCID=str(node),
        SLURM_LOCALID="0",
        SLURM_JOB_NODELIST="localhost,localhost",
        PYTHONPATH=str(REPO),
        OMP_NUM_THREADS="1",
        WANDB_MODE="disabled",
    )
    return env


def start_nodes(cell_dir: Path, job_id: str, **env: str) -> list[subprocess.Popen[str]]:
    port = str(free_port())
    return [
        subprocess.Popen(
            [sys.executable, "-c", NODE_TASK, str(cell_dir), port],
            env={**node_env(node, job_id), **env},
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for node in (0, 1)
    ]


def finish(nodes: list[subprocess.Popen[str]], timeout_s: float = 90) -> list[tuple[int, str]]:
    out = []
    for proc in nodes:
        try:
            text, _ = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            for p in nodes:
                p.kill()
            raise
        out.append((proc.returncode, text))
    return out


def tiny_cell(tmp_path: Path, steps: int) -> Path:
    root = write_dataset(tmp_path / "data", "mnqa")
    train = {"steps": steps, "batch_size": 2, "checkpoint_every": 2, "warmup_steps": 1}
    return make_cell(tmp_path / "grid" / "cell", cell_config(root, "mnqa", train=train))


def processes_on(cell_dir: Path) -> list[int]:
    """Live processes whose command line names the cell dir (torchrun or its workers)."""
    pids = []
    for entry in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = entry.read_bytes().split(b"\0")
        except OSError:
            continue
        if str(cell_dir).encode() in argv and b"-c" not in argv:
            pids.append(int(entry.parent.name))
    return pids


def test_two_node_tasks_run_one_cell_through_torchrun(tmp_path: Path) -> None:
    cell_dir = tiny_cell(tmp_path, steps=4)
    (code0, out0), (code1, out1) = finish(start_nodes(cell_dir, "4242"))
    assert code0 == 0, out0
    assert code1 == 0, out1
    assert 'RESULT {"ran": true, "held_by": ""}' in out0 and '"ran": true' in out1
    result = read_json(cell_dir / "result.json")
    assert result["hardware"]["world_size"] == 2  # one process on each of the two "nodes"
    rows = read_jsonl(cell_dir / "metrics.jsonl")
    assert [r["step"] for r in rows if r["phase"] == "train"] == [1, 2, 3, 4]
    assert len([r for r in rows if r["phase"] == "eval"]) == 1  # rank 0 alone evaluated
    status = read_json(cell_dir / "status.json")
    assert status["state"] == "done" and status["attempts"] == 1
    assert claim_holders(cell_dir) == [] and not claim_path(cell_dir).exists()
    # done: a second job's node tasks return at once, starting no torchrun
    (code0, out0), (code1, out1) = finish(start_nodes(cell_dir, "4243"), timeout_s=60)
    assert (code0, code1) == (0, 0) and "torch.distributed.run" not in out0 + out1
    assert read_json(cell_dir / "status.json")["attempts"] == 1


def wait_for_training(cell_dir: Path, nodes: list[subprocess.Popen[str]], step: int) -> None:
    """Until metrics.jsonl has logged training step `step` (both nodes still running)."""
    deadline = time.monotonic() + 90
    while True:
        assert time.monotonic() < deadline and all(p.poll() is None for p in nodes)
        rows = (
            read_jsonl(cell_dir / "metrics.jsonl") if (cell_dir / "metrics.jsonl").is_file() else []
        )
        if any(r["phase"] == "train" and r["step"] >= step for r in rows):
            return
        time.sleep(0.2)


def torchrun_of(node_task: int) -> list[int]:
    return [
        pid
        for pid in torchrun.descendants(node_task)
        if b"torch.distributed.run" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]


def test_the_requeue_signal_stops_torchrun_and_a_requeued_job_resumes(tmp_path: Path) -> None:
    """SIGUSR2 to every process of node 0 (as SLURM signals a job step): the task stops its
    torchrun tree (which ignores the signal), hands the signal to submitit's handler (here a
    stand-in that records it and exits) and leaves the cell interrupted with its claim released;
    the requeued job's node tasks resume from the checkpoint and finish."""
    cell_dir, mark = tiny_cell(tmp_path, steps=60), tmp_path / "requeued"
    nodes = start_nodes(cell_dir, "6161", REQUEUE_MARK=str(mark))
    wait_for_training(cell_dir, nodes, step=3)
    tree = [nodes[0].pid, *torchrun.descendants(nodes[0].pid)]
    assert len(tree) >= 3  # the task, torchrun, its worker
    for pid in tree:
        os.kill(pid, signal.SIGUSR2)
    (code0, out0), _ = finish(nodes, timeout_s=60)
    assert code0 != 0 and mark.read_text() == "SIGUSR2", out0  # submitit's handler ran
    status = read_json(cell_dir / "status.json")
    assert status["state"] == "interrupted" and "SystemExit(-1)" in status["error"], status
    assert claim_holders(cell_dir) == [] and processes_on(cell_dir) == []
    assert not (cell_dir / "result.json").exists()
    (code0, out0), (code1, out1) = finish(start_nodes(cell_dir, "6161"))
    assert (code0, code1) == (0, 0), out0 + out1
    first, last = map(int, re.search(r"trained steps (\d+)-(\d+)", out0).groups())
    assert first > 1 and last == 60  # resumed from a checkpoint, not from step 1
    assert read_json(cell_dir / "result.json")["hardware"]["world_size"] == 2
    assert read_json(cell_dir / "status.json")["attempts"] == 2


def test_a_killed_torchrun_fails_the_cell_with_its_exit_and_leaves_nothing_running(
    tmp_path: Path,
) -> None:
    cell_dir = tiny_cell(tmp_path, steps=400)
    nodes = start_nodes(cell_dir, "5151")
    wait_for_training(cell_dir, nodes, step=1)
    runs = torchrun_of(nodes[0].pid)
    assert len(runs) == 1
    os.kill(runs[0], signal.SIGKILL)
    (code0, out0), (code1, _) = finish(nodes, timeout_s=60)
    assert code0 != 0 and code1 != 0  # both node tasks end; neither hangs
    assert "TorchrunFailed" in out0
    status = read_json(cell_dir / "status.json")
    assert status["state"] == "failed", status
    assert status["error"].startswith("torchrun on node 0 exited with signal SIGKILL")
    assert not (cell_dir / "result.json").exists()
    assert claim_holders(cell_dir) == []
    time.sleep(1.0)  # an orphaned worker would still be training (and later write)
    assert processes_on(cell_dir) == []
    assert not (cell_dir / "result.json").exists()
    assert json.loads((cell_dir / "status.json").read_text())["state"] == "failed"
