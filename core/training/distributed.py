"""torch.distributed setup from torchrun-style environment variables, and the one collective the
cell runner needs beyond DDP's (mean of logged losses).

`init_distributed` reads RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT (what torchrun
exports). Under SLURM/submitit the launcher is responsible for exporting these (e.g. from
submitit's JobEnvironment); without them the process runs single, world size 1.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

REQUIRED_ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = ""


def _env_int(env: dict[str, str], name: str) -> int:
    value = env[name]
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name}={value!r}: must be an integer (set by torchrun).") from None


def init_distributed(
    backend: str | None = None, timeout_s: float = 1800.0, env: dict[str, str] | None = None
) -> DistInfo:
    """Join the process group described by the environment (idempotent).

    Backend: gloo on CPU, nccl when CUDA is available (each rank pins cuda:LOCAL_RANK), unless
    `backend` is given. WORLD_SIZE absent or 1 → no process group, `DistInfo()` describes rank 0."""
    env = dict(os.environ) if env is None else env
    if dist.is_available() and dist.is_initialized():
        return DistInfo(
            dist.get_rank(),
            dist.get_world_size(),
            int(env.get("LOCAL_RANK", dist.get_rank())),
            dist.get_backend(),
        )
    if "WORLD_SIZE" not in env or _env_int(env, "WORLD_SIZE") <= 1:
        return DistInfo()
    missing = [name for name in REQUIRED_ENV if name not in env]
    if missing:
        raise ValueError(
            f"WORLD_SIZE={env['WORLD_SIZE']} but {', '.join(missing)} not set. Fix: launch with "
            "torchrun, or have the launcher export RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and "
            "MASTER_PORT (e.g. from submitit's JobEnvironment)."
        )
    rank, world = _env_int(env, "RANK"), _env_int(env, "WORLD_SIZE")
    local_rank = _env_int(env, "LOCAL_RANK") if "LOCAL_RANK" in env else rank
    if not 0 <= rank < world:
        raise ValueError(f"RANK={rank} outside [0, WORLD_SIZE={world}).")
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(
        backend=backend,
        init_method=f"tcp://{env['MASTER_ADDR']}:{env['MASTER_PORT']}",
        rank=rank,
        world_size=world,
        timeout=timedelta(seconds=timeout_s),
    )
    return DistInfo(rank, world, local_rank, backend)


def leave_process_group() -> None:
    """Destroy this process's process group, if any (local: waits for no other rank).

    A rank that exits with its group alive may abort or hang in the group's teardown at
    interpreter exit; under torchrun ranks > 0 finish first (rank 0 alone evaluates)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def mean_over_ranks(values: list[float]) -> list[float]:
    """Element-wise mean of `values` over every rank of the process group (identity without one).

    Used for logged training losses, so rank 0 reports the loss of the whole global batch."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return (t / dist.get_world_size()).tolist()
