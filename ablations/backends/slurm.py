"""SLURM job arrays through submitit: explicit limits, requeue on time-out, stages as dependencies.

Parameters come from the grid's `resources` capped/filled by the cluster profile. The first stage is
one array; the cells of a later stage are grouped by the base they start from, one array per base,
each with `--dependency=afterok:<the base's job>` (a base done earlier needs none), so one launch
queues the whole DAG. Submission returns as soon as sbatch has answered and the job ids are in
jobs.json; with `wait=true` it then blocks until none of the cells is queued or running.

The launcher's cell claims are released once the job ids are recorded (a queued cell is then held
by its job: pending and listed by squeue); each job's rank 0 claims its cell when it starts, and
steps aside when another live worker has it.

`resources.nodes == 1`: one task per GPU (`CellJob`, torch.distributed from submitit's
environment). `nodes > 1`: one task per node, each running torchrun over the node's GPUs
(`TorchrunCellJob`, ablations.backends.torchrun), rendezvous port `backend.rdzv_port`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ablations.backends.base import LaunchSettings, Stage, Submit
from ablations.backends.job import CellJob, TorchrunCellJob, export_repo_path
from ablations.backends.torchrun import DEFAULT_PORT, check_port, check_resources, nodes_of
from ablations.claims import Claims
from ablations.grid import GridSpec
from ablations.jobs import live_jobs, sinfo_answers
from ablations.profiles import ProfileError, load_profile
from ablations.status import grid_states
from core.results import JOBS_FILE, SUBMITIT_DIR, State, is_done, read_jobs, record_jobs


def prepare(settings: LaunchSettings, spec: GridSpec) -> Submit:
    """Load the profile, build the parameters and check that a controller answers, now."""
    backend = settings.backend
    profile = load_profile(str(backend.get("profile") or ""))
    check_resources(spec.resources, "slurm", settings.cell_fn)
    params = slurm_parameters(profile, spec.resources, f"vidprune-{spec.name}")
    make_job = cell_jobs(settings, spec.resources)
    if not sinfo_answers(float(backend.get("probe_timeout_s") or 5)):
        raise ValueError(
            "backend=slurm: `sinfo` does not answer (no SLURM controller reachable). Fix: run on a "
            "login node, start one with slurm/single_node.sh up, or use backend=inline/local."
        )
    poll_s = float(backend.get("poll_s", 10))

    def submit(stages: list[Stage], grid_dir: Path, claims: Claims) -> bool:
        submitted: dict[str, str] = {}
        try:
            for stage in stages:
                for after, cells in group_by_dependency(stage, grid_dir, submitted).items():
                    extra = {"dependency": f"afterok:{after}"} if after else {}
                    folder = grid_dir / SUBMITIT_DIR
                    jobs = submit_slurm(cells, make_job, folder, profile, params, extra)
                    record_jobs(grid_dir, "slurm", jobs, settings.lease_s)
                    submitted.update(jobs)
        finally:
            claims.close()
        first, last = next(iter(submitted.values())), list(submitted.values())[-1]
        print(
            f"submitted {len(submitted)} cells to SLURM (jobs {first} … {last}); manifest "
            f"{grid_dir / JOBS_FILE}"
        )
        if not settings.wait:
            print(
                f"check: python ablations/launch.py grid={spec.name} action=status "
                f"results_root={grid_dir.parent}"
            )
            return False
        wait_for(grid_dir, list(submitted), poll_s, settings.stale_s)
        return True

    return submit


def group_by_dependency(
    stage: Stage, grid_dir: Path, submitted: dict[str, str]
) -> dict[str, list[Path]]:
    """The stage's cells keyed by the job their base runs as ("" = none: no base, or its base is
    done already); a base still queued from an earlier launch is found in jobs.json."""
    manifest = read_jobs(grid_dir)
    groups: dict[str, list[Path]] = {}
    for cell_dir in stage.cells:
        base = stage.base_of(cell_dir)
        job = ""
        if base is not None and not is_done(base):
            recorded = manifest["cells"].get(base.name) or {}
            job = submitted.get(base.name) or (
                recorded.get("job_id", "") if recorded.get("backend") == "slurm" else ""
            )
        groups.setdefault(str(job), []).append(cell_dir)
    return groups


def wait_for(grid_dir: Path, cell_ids: list[str], poll_s: float, stale_s: float) -> None:
    """Block until none of the cells is queued or running (SLURM liveness from squeue)."""
    wanted = set(cell_ids)
    while True:
        rows = grid_states(grid_dir, live_jobs(), stale_s)
        if not any(
            r["cell_id"] in wanted and r["state"] in (State.RUNNING, State.PENDING) for r in rows
        ):
            return
        time.sleep(poll_s)


def slurm_parameters(
    profile: Mapping[str, Any], resources: Mapping[str, Any], job_name: str
) -> dict[str, Any]:
    """`update_parameters` kwargs (generic + slurm_*) for one grid on one cluster: one task per
    GPU, or for `nodes > 1` one task per node (torchrun starts the per-GPU processes)."""
    check_resources(resources, "slurm")
    gpus, nodes = int(resources.get("gpus") or 0), nodes_of(resources)
    cap = profile.get("gpus_per_node")
    if cap is not None and gpus > int(cap):
        raise ProfileError(
            f"grid resources.gpus={gpus} exceeds the profile's gpus_per_node={cap}. Fix: lower "
            "grid.resources.gpus or use a profile for bigger nodes."
        )
    tasks = 1 if nodes > 1 else int(resources.get("tasks") or max(gpus, 1))
    cpus_per_task = int(resources.get("cpus") or 1)
    mem_gb = float(resources.get("mem_gb") or 4)
    if gpus and profile.get("cpus_per_gpu"):
        cpus_per_task = max(1, int(profile["cpus_per_gpu"]) * gpus // tasks)
    if gpus and profile.get("mem_gb_per_gpu"):
        mem_gb = float(profile["mem_gb_per_gpu"]) * gpus
    timeout = int(resources.get("timeout_min") or 60)
    if profile.get("timeout_min"):
        timeout = min(timeout, int(profile["timeout_min"]))
    parallel = int(resources.get("array_parallelism") or 16)
    if profile.get("array_parallelism"):
        parallel = min(parallel, int(profile["array_parallelism"]))
    params: dict[str, Any] = {
        "name": job_name,
        "timeout_min": timeout,
        "nodes": nodes,
        "tasks_per_node": tasks,
        "gpus_per_node": gpus,
        "cpus_per_task": cpus_per_task,
        "mem_gb": mem_gb,
        "slurm_partition": profile["partition"],
        "slurm_array_parallelism": parallel,
        "slurm_signal_delay_s": int(profile["signal_delay_s"]),
        "slurm_additional_parameters": {
            "requeue": True,
            **(profile.get("additional_parameters") or {}),
        },
    }
    for key in ("account", "qos", "constraint", "exclude"):
        if profile.get(key):
            params[f"slurm_{key}"] = profile[key]
    if profile.get("setup"):
        params["slurm_setup"] = list(profile["setup"])
    return params


def slurm_executor(
    folder: Path, profile: Mapping[str, Any], params: Mapping[str, Any], cluster: str = "slurm"
) -> Any:
    """AutoExecutor for `cluster` (tests pass "local" to check the parameter names)."""
    import submitit

    executor = submitit.AutoExecutor(
        folder=str(folder / "%j"),
        cluster=cluster,
        slurm_max_num_timeout=int(profile["max_num_timeout"]),
    )
    executor.update_parameters(**params)
    return executor


def cell_jobs(settings: LaunchSettings, resources: Mapping[str, Any]) -> Callable[[Path], Any]:
    """The submitted callable of a cell dir: a `CellJob`, or for `nodes > 1` a `TorchrunCellJob`
    (rendezvous port `backend.rdzv_port`, checked now)."""
    if nodes_of(resources) <= 1:
        return lambda cell_dir: CellJob(settings.cell_fn, str(cell_dir), "", settings.lease_s)
    port = check_port(settings.backend.get("rdzv_port", DEFAULT_PORT))
    gpus = int(resources.get("gpus") or 0)
    return lambda cell_dir: TorchrunCellJob(str(cell_dir), gpus, port, settings.lease_s)


def submit_slurm(
    cell_dirs: Sequence[Path],
    make_job: Callable[[Path], Any],
    folder: Path,
    profile: Mapping[str, Any],
    params: Mapping[str, Any],
    additional: Mapping[str, Any] | None = None,
    max_array_size: int = 1000,
) -> dict[str, str]:
    """Submit one array per chunk of `max_array_size` cells (`make_job(cell_dir)` each), with
    extra sbatch options `additional` (e.g. a dependency); {cell dir name: job id}."""
    export_repo_path()
    if additional:
        extra = {**params.get("slurm_additional_parameters", {}), **additional}
        params = {**params, "slurm_additional_parameters": extra}
    executor = slurm_executor(folder, profile, params)
    submitted: dict[str, str] = {}
    for start in range(0, len(cell_dirs), max_array_size):
        chunk = list(cell_dirs[start : start + max_array_size])
        jobs = executor.submit_array([make_job(d) for d in chunk])
        for cell_dir, job in zip(chunk, jobs, strict=True):
            submitted[cell_dir.name] = str(job.job_id)
    return submitted
