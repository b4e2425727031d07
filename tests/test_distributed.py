"""Two CPU processes over gloo: DDP keeps replicas identical; only rank 0 writes."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from core.training import distributed as D


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _init_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Linear(4, 2)


def _train(model: nn.Module, rank: int) -> torch.Tensor:
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(100 + rank)  # rank-dependent data
    for _ in range(3):
        x = torch.randn(8, 4, generator=g)
        loss = model(x).pow(2).mean() * (rank + 1)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)
    info = D.init_distributed(backend="gloo", timeout_s=120)
    try:
        assert (info.rank, info.world_size, info.backend) == (rank, world, "gloo")
        assert D.init_distributed() == info  # idempotent
        flat = _train(nn.parallel.DistributedDataParallel(_init_model()), rank)
        gathered = D.all_gather_object(flat)
        # negative control: the same training without DDP drifts apart across ranks
        plain = D.all_gather_object(_train(_init_model(), rank))
        mean = D.all_reduce_mean(torch.tensor([float(rank)]))
        token = D.broadcast_object({"from": rank} if rank == 0 else None)
        if D.is_main():
            with open(os.path.join(out_dir, f"written_by_{rank}.txt"), "w") as f:
                f.write("x")
        D.barrier()
        torch.save(
            {"gathered": gathered, "plain": plain, "mean": mean, "token": token, "own": flat},
            os.path.join(out_dir, f"report_{rank}.pt"),
        )
    finally:
        D.cleanup()


def test_ddp_two_cpu_ranks_stay_identical(tmp_path):
    world = 2
    mp.spawn(_worker, args=(world, _free_port(), str(tmp_path)), nprocs=world, join=True)
    reports = [torch.load(tmp_path / f"report_{r}.pt", weights_only=False) for r in range(world)]
    gathered = reports[0]["gathered"]
    assert torch.equal(gathered[0], gathered[1])
    assert torch.equal(reports[0]["own"], reports[1]["own"])
    assert not torch.allclose(reports[0]["plain"][0], reports[0]["plain"][1])
    init = torch.cat([p.detach().flatten() for p in _init_model().parameters()])
    assert not torch.allclose(init, reports[0]["own"])  # the steps really moved the weights
    assert all(float(r["mean"]) == pytest.approx(0.5) for r in reports)
    assert all(r["token"] == {"from": 0} for r in reports)
    assert sorted(p.name for p in tmp_path.glob("written_by_*")) == ["written_by_0.txt"]


def test_single_process_defaults(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    info = D.init_distributed()
    assert info == D.DistInfo() and info.is_main and not info.distributed
    t = torch.tensor([1.0, 3.0])
    assert torch.equal(D.all_reduce_mean(t), t)
    assert D.broadcast_object("a") == "a" and D.all_gather_object(1) == [1]
    D.barrier()
    D.cleanup()


def test_missing_rendezvous_env_is_a_clear_error():
    with pytest.raises(ValueError, match="MASTER_ADDR, MASTER_PORT not set"):
        D.init_distributed(env={"WORLD_SIZE": "2", "RANK": "0"})
    with pytest.raises(ValueError, match="RANK=5"):
        D.init_distributed(
            env={"WORLD_SIZE": "2", "RANK": "5", "MASTER_ADDR": "x", "MASTER_PORT": "1"}
        )
