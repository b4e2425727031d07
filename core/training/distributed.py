"""torch.distributed setup from torchrun-style environment variables, and small collectives.

`init_distributed` reads RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT (what torchrun
exports). Under SLURM/submitit the launcher is responsible for exporting these (e.g. from
submitit's JobEnvironment); without them the process runs single, world size 1. Every helper here
is a no-op or identity when no process group is initialised, so single-process code calls them
unconditionally.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

REQUIRED_ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = ""

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


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


def _active() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if _active() else 0


def get_world_size() -> int:
    return dist.get_world_size() if _active() else 1


def is_main() -> bool:
    return get_rank() == 0


def barrier() -> None:
    if _active():
        dist.barrier()


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """Mean of `tensor` over ranks (a new tensor; the input is left unchanged)."""
    if not _active():
        return tensor.clone()
    out = tensor.detach().clone()
    if not out.is_floating_point():
        out = out.double()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / dist.get_world_size()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """`obj` from rank `src` on every rank (any picklable object; sent only between our ranks)."""
    if not _active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order."""
    if not _active():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def cleanup() -> None:
    if _active():
        dist.destroy_process_group()
