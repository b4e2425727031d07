"""Backends: choosing one, submitit's local executor (concurrency cap, time-out requeue and resume),
the requeue callable, cluster profiles, and the slurm_* parameter set."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import submitit

from ablations import app, hydra_conf
from ablations.backends import choose_backend
from ablations.backends.job import CellJob, load_callable
from ablations.backends.local import LocalLimits, run_local
from ablations.backends.slurm import slurm_executor, slurm_parameters
from ablations.grid import resolve_grid
from ablations.jobs import sinfo_answers
from ablations.profiles import PROFILE_DIR, ProfileError, available_profiles, load_profile
from core.io import read_jsonl, write_yaml_atomic
from tests.launcher_cells import expected_value

CELL_FN = "tests.launcher_cells:count_cell"


def make_cell(root: Path, name: str, steps: int, seed: int = 0) -> Path:
    cell_dir = root / name
    write_yaml_atomic(
        cell_dir / "config.yaml",
        {
            "train": {"steps": steps, "seed": seed},
            "cell": {"cell_id": name, "grid": "g", "name": name, "axes": {}, "overrides": {}},
        },
    )
    return cell_dir


def fake_command(directory: Path, name: str, body: str) -> None:
    path = directory / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def test_sinfo_probe_needs_an_answer_not_just_a_binary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert not sinfo_answers(1.0)  # not on PATH
    fake_command(tmp_path, "sinfo", "exit 1")
    assert not sinfo_answers(1.0)  # controller down
    fake_command(tmp_path, "sinfo", "sleep 5")
    assert not sinfo_answers(0.5)  # hangs
    fake_command(tmp_path, "sinfo", "echo debug")
    assert sinfo_answers(1.0)


def test_auto_backend_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in os.environ if k.startswith("SLURM_")]:
        monkeypatch.delenv(key)
    monkeypatch.setattr("ablations.backends.sinfo_answers", lambda timeout_s: False)
    assert choose_backend({"name": "auto", "profile": "local"}) == "inline"
    monkeypatch.setattr("ablations.backends.sinfo_answers", lambda timeout_s: True)
    assert choose_backend({"name": "auto", "profile": None}) == "inline"  # srun alone: no
    assert choose_backend({"name": "auto", "profile": "local"}) == "slurm"  # auto: true
    assert choose_backend({"name": "auto", "profile": "example_gpu_cluster"}) == "inline"
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    assert choose_backend({"name": "auto", "profile": "example_gpu_cluster"}) == "slurm"
    with pytest.raises(ValueError, match="no cluster profile"):
        choose_backend({"name": "auto", "profile": None})
    assert choose_backend({"name": "local"}) == "local"
    with pytest.raises(ValueError, match="unknown backend"):
        choose_backend({"name": "lsf"})


def test_profiles_are_validated(tmp_path: Path) -> None:
    assert {"local", "example_gpu_cluster"} <= set(available_profiles())
    for name in available_profiles():
        load_profile(name)
    good = (PROFILE_DIR / "local.yaml").read_text()
    (tmp_path / "nopart.yaml").write_text(good.replace("partition: debug\n", ""))
    with pytest.raises(ProfileError, match="required key 'partition' is missing"):
        load_profile("nopart", tmp_path)
    (tmp_path / "typo.yaml").write_text(good + "acount: x\n")
    with pytest.raises(ProfileError, match="acount: unknown profile key"):
        load_profile("typo", tmp_path)
    with pytest.raises(ProfileError, match="use one of: nopart, typo"):
        load_profile("mars", tmp_path)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (["backend=slurm", "backend.profile=mars"], "backend.profile='mars'"),
        (["backend=slurm", "backend.profile=local"], "sinfo` does not answer"),
        (["backend=local", "backend.max_parallel=0"], "backend.max_parallel=0"),
    ],
)
def test_bad_backend_settings_are_refused_before_writing(
    settings: list[str],
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr("ablations.backends.slurm.sinfo_answers", lambda timeout_s: False)
    args = ["grid=smoke", f"results_root={tmp_path}", *settings]
    assert app.main(hydra_conf.compose_launch(args), args) == 2
    assert message in capsys.readouterr().out
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("grid", hydra_conf.available("grid"))
def test_submitit_accepts_the_slurm_parameter_set(grid: str, tmp_path: Path) -> None:
    cfg = hydra_conf.compose_launch([f"grid={grid}", "scale=paper"])
    spec = resolve_grid(app.plain(cfg.grid), "paper")
    for name in available_profiles():
        profile = load_profile(name)
        resources = dict(spec.resources)
        if profile.get("gpus_per_node") is not None:
            resources["gpus"] = min(resources["gpus"], profile["gpus_per_node"])
        params = slurm_parameters(profile, resources, f"vidprune-{grid}")
        slurm_executor(tmp_path, profile, params, cluster="local")  # raises on unknown names
    with pytest.raises(NameError):  # negative control: a typo is caught
        slurm_executor(tmp_path, profile, {**params, "slurm_partitoin": "x"}, cluster="local")


def test_gpu_request_beyond_the_profile_is_refused() -> None:
    with pytest.raises(ProfileError, match="gpus_per_node=0"):
        slurm_parameters(load_profile("local"), {"gpus": 2}, "x")
    params = slurm_parameters(load_profile("example_gpu_cluster"), {"gpus": 8, "cpus": 1}, "x")
    assert params["tasks_per_node"] == 8 and params["gpus_per_node"] == 8
    assert params["cpus_per_task"] == 8 and params["mem_gb"] == 480


def test_requeue_returns_a_fresh_instance_for_the_same_cell() -> None:
    job = CellJob(CELL_FN, "/results/g/abc")
    job.stale_state = "must not travel"
    delayed = job.checkpoint()
    assert isinstance(delayed, submitit.helpers.DelayedSubmission)
    fresh = delayed.function
    assert isinstance(fresh, CellJob) and fresh is not job
    assert (fresh.cell_fn, fresh.cell_dir) == (CELL_FN, "/results/g/abc")
    assert not hasattr(fresh, "stale_state")
    with pytest.raises(ValueError, match="module:function"):
        load_callable("tests.launcher_cells.count_cell")


@pytest.mark.usefixtures("_clean_env")
def test_local_executor_runs_cells_with_a_concurrency_cap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAUNCHER_TEST_STEP_S", "0.2")
    dirs = [make_cell(tmp_path, f"c{i}", steps=4, seed=i) for i in range(3)]
    submitted: list[str] = []
    params = {"timeout_min": 2, "signal_delay_s": 5, "tasks_per_node": 1}
    outcome = run_local(
        dirs,
        CELL_FN,
        tmp_path / "_submitit",
        LocalLimits(params, max_parallel=2, max_num_timeout=1, poll_s=0.1),
        on_submit=lambda d, job: submitted.append(d.name),
    )
    assert outcome == {"c0": None, "c1": None, "c2": None}
    assert submitted == ["c0", "c1", "c2"]
    for i, d in enumerate(dirs):
        assert json.loads((d / "result.json").read_text())["value"] == expected_value(4, i)
    # the cap is 2: the third cell starts only after one of the first two has finished
    started = [(d / "attempts.jsonl").stat().st_mtime for d in dirs]
    finished = [(d / "result.json").stat().st_mtime for d in dirs]
    assert started[2] >= min(finished[:2])
    assert started[1] < finished[0]  # ... while the first two did run side by side


@pytest.mark.usefixtures("_clean_env")
def test_local_timeout_requeues_and_resumes_from_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAUNCHER_TEST_STEP_S", "0.25")
    cell = make_cell(tmp_path, "slow", steps=48, seed=3)  # ≈ 12 s of work
    # 20 s limit, USR2 10 s before it: the first attempt is cut ~10 s after its job started and
    # requeued. The margins leave room for a slow start on a busy machine (imports took > 4 s
    # in CI beside a training run, and a job killed before it began is not a timeout).
    params = {"timeout_min": 20 / 60, "signal_delay_s": 10, "tasks_per_node": 1}
    outcome = run_local(
        [cell],
        CELL_FN,
        tmp_path / "_submitit",
        LocalLimits(params, max_parallel=1, max_num_timeout=6, poll_s=0.2),
    )
    assert outcome == {"slow": None}
    starts = [a["start_step"] for a in read_jsonl(cell / "attempts.jsonl")]
    assert len(starts) >= 2 and starts[0] == 0 and all(s > 0 for s in starts[1:])
    assert starts == sorted(starts)
    result = json.loads((cell / "result.json").read_text())
    assert result["value"] == expected_value(48, 3)  # same as an uninterrupted run
    assert json.loads((cell / "status.json").read_text())["attempts"] == len(starts)


@pytest.mark.usefixtures("_clean_env")
def test_multi_task_cells_get_a_torch_distributed_environment(tmp_path: Path) -> None:
    cell = make_cell(tmp_path, "ddp", steps=1)
    params = {"timeout_min": 2, "signal_delay_s": 5, "tasks_per_node": 2}
    outcome = run_local(
        [cell],
        "tests.launcher_cells:env_cell",
        tmp_path / "_submitit",
        LocalLimits(params, max_parallel=1, max_num_timeout=1, poll_s=0.2),
    )
    assert outcome == {"ddp": None}
    ranks = [json.loads((cell / f"rank_{r}.json").read_text()) for r in (0, 1)]
    assert [r["RANK"] for r in ranks] == ["0", "1"]
    assert {r["WORLD_SIZE"] for r in ranks} == {"2"}
    assert {r["LOCAL_RANK"] for r in ranks} == {"0", "1"}
    assert len({(r["MASTER_ADDR"], r["MASTER_PORT"]) for r in ranks}) == 1
    assert ranks[0]["MASTER_PORT"] is not None


@pytest.mark.usefixtures("_clean_env")
def test_local_backend_through_the_launcher(tmp_path: Path) -> None:
    args = [
        "grid=smoke",
        f"results_root={tmp_path}",
        f"cell_fn={CELL_FN}",
        "backend=local",
        "backend.max_parallel=2",
        "backend.poll_s=0.2",
        "collect=false",
    ]
    assert app.main(hydra_conf.compose_launch(args), args) == 0
    manifest = json.loads((tmp_path / "smoke" / "jobs.json").read_text())
    assert len(manifest["cells"]) == 3
    for cell_id, job in manifest["cells"].items():
        assert job["backend"] == "local" and job["job_id"].isdigit()
        result = json.loads((tmp_path / "smoke" / cell_id / "result.json").read_text())
        assert result["value"] == expected_value(6, 0)


@pytest.fixture
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LAUNCHER_TEST_FAIL", raising=False)
    monkeypatch.delenv("LAUNCHER_TEST_STEP_S", raising=False)
