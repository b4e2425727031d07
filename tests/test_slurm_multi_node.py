"""slurm/multi_node.py: the sbatch script of a multi-node torchrun cell, rendered and checked
(its #SBATCH lines, and its body run by bash with stand-ins for scontrol and srun; torchrun's own
argument parser reads the command it launches). No SLURM cluster needed."""

from __future__ import annotations

import importlib.util
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import submitit

from ablations.backends.job import TorchrunCellJob
from ablations.profiles import load_profile, validate_profile

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("multi_node", REPO / "slurm" / "multi_node.py")
MULTI = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(MULTI)


def cell(tmp_path: Path, name: str = "cell-01") -> Path:
    path = tmp_path / "results" / "grid" / name
    path.mkdir(parents=True)
    (path / "config.yaml").write_text("train: {}\n")
    return path


def directives(script: str) -> dict[str, str | bool]:
    out: dict[str, str | bool] = {}
    for line in script.splitlines():
        if line.startswith("#SBATCH --"):
            key, eq, value = line.removeprefix("#SBATCH --").partition("=")
            out[key] = value if eq else True
    return out


def test_the_example_profile_renders_one_torchrun_task_per_node(tmp_path) -> None:
    script = MULTI.render_sbatch(cell(tmp_path), load_profile("example_gpu_cluster"), nodes=4)
    d = directives(script)
    assert d["nodes"] == "4" and d["ntasks-per-node"] == "1" and d["gpus-per-node"] == "8"
    assert d["cpus-per-task"] == "64" and d["mem"] == "480G"  # 8 × the profile's per-GPU
    assert d["time"] == "2880" and d["partition"] == "gpu" and d["account"] == "my_project"
    assert d["requeue"] is True and d["output"].endswith("cell-01/slurm-%j.out")
    assert "qos" not in d  # null in the profile: no directive
    body = script.splitlines()
    assert body[0] == "#!/bin/bash"
    setup = body.index("source .venv/bin/activate")
    srun = next(i for i, line in enumerate(body) if line.startswith("srun "))
    assert setup < srun == len(body) - 1
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0


def run_body(tmp_path: Path, script: str, nodes: int, job_id: str = "4242") -> dict[str, Any]:
    """Run the script under bash with stand-ins: `scontrol show hostnames` lists gpu-017, gpu-018,
    ...; `srun` records its argv, whether the setup ran and PYTHONPATH."""
    bin_dir, log = tmp_path / "bin", tmp_path / "srun.json"
    bin_dir.mkdir()
    shims = {
        "scontrol": f'[ "$1 $2" = "show hostnames" ] && seq -f "gpu-%03g" 17 {16 + nodes}',
        "srun": f"{sys.executable} -c \"import json, os, sys; json.dump({{'argv': sys.argv[1:], "
        f"'setup': os.environ.get('SETUP_RAN'), 'path': os.environ['PYTHONPATH']}}, "
        f"open('{log}', 'w'))\" \"$@\"",
    }
    for name, body in shims.items():
        (bin_dir / name).write_text(f"#!/bin/bash\n{body}\n")
        (bin_dir / name).chmod(stat.S_IRWXU)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_NNODES": str(nodes),
           "SLURM_JOB_ID": job_id, "SLURM_JOB_NODELIST": "gpu-[017-018]"}  # fmt: skip
    proc = subprocess.run(["bash"], input=script, text=True, env=env, capture_output=True)
    assert proc.returncode == 0, proc.stderr
    return json.loads(log.read_text())


PROFILE = {"partition": "p", "account": None, "max_num_timeout": 3, "signal_delay_s": 60,
           "gpus_per_node": 4, "setup": ["export SETUP_RAN=yes"],
           "additional_parameters": {"gres_flags": "enforce-binding"}}  # fmt: skip


@pytest.mark.parametrize("nodes", [2, 20000])
def test_the_script_body_starts_torchrun_with_c10d_on_the_first_node(tmp_path, nodes) -> None:
    """bash runs the script with `scontrol` and `srun` stand-ins: srun receives one torchrun per
    node, rendezvous at the first host of the allocation, after the profile's setup ran. A host
    list longer than a pipe's buffer is read whole (no SIGPIPE under `set -o pipefail`)."""
    profile = validate_profile(PROFILE, "test profile")
    cell_dir = cell(tmp_path)
    script = MULTI.render_sbatch(cell_dir, profile, nodes=nodes, port=29611, timeout_min=90)
    d = directives(script)
    assert d["time"] == "90" and d["gres-flags"] == "enforce-binding" and "account" not in d
    seen = run_body(tmp_path, script, nodes)
    assert seen["setup"] == "yes" and seen["path"].split(":")[0] == str(REPO)
    argv = seen["argv"]
    assert argv[:5] == ["--ntasks-per-node=1", "--kill-on-bad-exit=1", "python", "-m",
                        "torch.distributed.run"]  # fmt: skip
    from torch.distributed.run import get_args_parser

    args = get_args_parser().parse_args(argv[5:])
    assert (args.nnodes, args.nproc_per_node) == (str(nodes), "4")
    assert (args.rdzv_backend, args.rdzv_endpoint, args.rdzv_id) == (
        "c10d",
        "gpu-017:29611",
        "4242",
    )
    assert args.module and args.training_script == "core.cell"
    assert args.training_script_args == [str(cell_dir.resolve())]


def test_the_script_and_the_launcher_run_the_same_torchrun_command(tmp_path, monkeypatch) -> None:
    """What srun starts on each node of the sbatch script is word for word what a launcher's
    node task (TorchrunCellJob) starts in the same allocation."""
    cell_dir = cell(tmp_path).resolve()
    profile = validate_profile(PROFILE, "test profile")
    script = MULTI.render_sbatch(cell_dir, profile, nodes=2, port=29611, python=sys.executable)
    from_script = run_body(tmp_path, script, nodes=2, job_id="4242")["argv"][2:]
    for key, value in {
        "SUBMITIT_EXECUTOR": "slurm",
        "SLURM_JOB_ID": "4242",
        "SLURM_JOB_NUM_NODES": "2",
        "SLURM_JOB_NODELIST": "gpu-[017-018]",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)
    job = TorchrunCellJob(str(cell_dir), gpus_per_node=4, port=29611)
    assert from_script == job.command(submitit.JobEnvironment())
    assert "--nnodes=2" in from_script and "--rdzv-endpoint=gpu-017:29611" in from_script


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"nodes": 1}, "nodes=1: this script is the multi-node path"),
        ({"nodes": 2, "gpus_per_node": 16}, "gpus_per_node=16: need 1 to the profile's"),
        ({"nodes": 2, "port": 80}, "port=80: outside"),
    ],
)
def test_bad_settings_are_refused_with_the_fix(tmp_path, kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        MULTI.render_sbatch(cell(tmp_path), load_profile("example_gpu_cluster"), **kwargs)


def test_a_directory_that_is_not_a_cell_or_has_spaces_is_refused(tmp_path, capsys) -> None:
    profile = load_profile("example_gpu_cluster")
    with pytest.raises(FileNotFoundError, match="no config.yaml"):
        MULTI.render_sbatch(tmp_path, profile, nodes=2)
    with pytest.raises(ValueError, match="whitespace"):
        MULTI.render_sbatch(cell(tmp_path, "my cell"), profile, nodes=2)
    with pytest.raises(SystemExit):
        MULTI.main([str(cell(tmp_path, "c2")), "--nodes", "2", "--profile", "no_such_site"])
    assert "backend.profile='no_such_site'" in capsys.readouterr().err
