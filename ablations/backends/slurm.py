"""SLURM job arrays through submitit: one array per grid, explicit limits, requeue on time-out.

Parameters come from the grid's `resources` capped/filled by the cluster profile. Submission
returns as soon as sbatch has answered; the caller records the job ids in jobs.json.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ablations.backends.job import CellJob, export_repo_path
from ablations.profiles import ProfileError


def slurm_parameters(
    profile: Mapping[str, Any], resources: Mapping[str, Any], job_name: str
) -> dict[str, Any]:
    """`update_parameters` kwargs (generic + slurm_*) for one grid on one cluster."""
    gpus = int(resources.get("gpus") or 0)
    cap = profile.get("gpus_per_node")
    if cap is not None and gpus > int(cap):
        raise ProfileError(
            f"grid resources.gpus={gpus} exceeds the profile's gpus_per_node={cap}. Fix: lower "
            "grid.resources.gpus or use a profile for bigger nodes."
        )
    tasks = int(resources.get("tasks") or max(gpus, 1))
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
        "nodes": int(resources.get("nodes") or 1),
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


def submit_slurm(
    cell_dirs: Sequence[Path],
    cell_fn: str,
    folder: Path,
    profile: Mapping[str, Any],
    params: Mapping[str, Any],
    max_array_size: int = 1000,
) -> dict[str, str]:
    """Submit one array per chunk of `max_array_size` cells; {cell dir name: job id}."""
    export_repo_path()
    executor = slurm_executor(folder, profile, params)
    submitted: dict[str, str] = {}
    for start in range(0, len(cell_dirs), max_array_size):
        chunk = list(cell_dirs[start : start + max_array_size])
        jobs = executor.submit_array([CellJob(cell_fn, str(d)) for d in chunk])
        for cell_dir, job in zip(chunk, jobs, strict=True):
            submitted[cell_dir.name] = str(job.job_id)
    return submitted
