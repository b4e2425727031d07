"""Two CPU ranks over gloo run one real cell: the same losses as one process on the global batch,
identical replicas, and only rank 0 writes results."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from core.cell import run_cell
from core.io import read_json, read_jsonl
from core.training import distributed as D
from tests.cell_fixtures import (
    cell_config,
    final_weights,
    free_port,
    join_as_rank,
    make_cell,
    same_weights,
    write_dataset,
)

STEPS = 6


def _rank(rank: int, world: int, port: int, cell_dir: str) -> None:
    join_as_rank(rank, world, port)
    result = run_cell(cell_dir)
    D.mean_over_ranks([0.0])  # rank 0 has finished evaluating and writing
    torch.save(
        {"result": result, "weights": final_weights(Path(cell_dir))},
        os.path.join(os.path.dirname(cell_dir), f"rank{rank}.pt"),
    )
    torch.distributed.destroy_process_group()


def _losses(cell_dir) -> list[float]:
    rows = read_jsonl(cell_dir / "metrics.jsonl")
    return [r["train/loss"] for r in rows if r["phase"] == "train"]


@pytest.fixture(autouse=True)
def _restore_torch_globals():
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic)


def test_two_ranks_match_one_process_on_the_global_batch_and_only_rank0_writes(tmp_path):
    root = write_dataset(tmp_path / "data", "ddpqa")
    train = {"steps": STEPS, "batch_size": 2, "checkpoint_every": 3}
    ddp_dir = make_cell(tmp_path / "ddp" / "cell", cell_config(root, "ddpqa", train=train))
    mp.spawn(_rank, args=(2, free_port(), str(ddp_dir)), nprocs=2, join=True)
    # One process with the global batch (2 ranks × 2 clips) sees the same clips at every step.
    single = {**train, "batch_size": 4}
    one_dir = make_cell(tmp_path / "one" / "cell", cell_config(root, "ddpqa", train=single))
    reference = run_cell(one_dir)

    reports = [torch.load(tmp_path / "ddp" / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    assert reports[1]["result"] == {} and reports[0]["result"] == read_json(ddp_dir / "result.json")
    assert same_weights(reports[0]["weights"], reports[1]["weights"])
    ddp, one = _losses(ddp_dir), _losses(one_dir)
    assert len(ddp) == len(one) == STEPS
    assert ddp == pytest.approx(one, rel=1e-4)
    # Float noise only: gradients that are 0 in exact arithmetic (e.g. a key bias under softmax)
    # are ~1e-10 noise that Adam normalises into small but visible steps.
    assert same_weights(final_weights(ddp_dir), final_weights(one_dir), rtol=1e-3, atol=1e-4)
    # Negative control: one process on rank 0's half of each batch ends elsewhere.
    half_dir = make_cell(tmp_path / "half" / "cell", cell_config(root, "ddpqa", train=train))
    run_cell(half_dir)
    assert _losses(half_dir) != pytest.approx(one, rel=1e-2)
    got = reports[0]["result"]["metrics"]
    assert got["accuracy"] == reference["metrics"]["accuracy"]
    assert got["val_loss"] == pytest.approx(reference["metrics"]["val_loss"], rel=1e-4)
    assert read_json(ddp_dir / "status.json")["attempts"] == 1  # rank 1 never wrote a status


def test_single_process_defaults(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    assert D.init_distributed() == D.DistInfo()
    assert D.mean_over_ranks([1.5, 2.0]) == [1.5, 2.0]


def test_missing_rendezvous_env_is_a_clear_error():
    with pytest.raises(ValueError, match="MASTER_ADDR, MASTER_PORT not set"):
        D.init_distributed(env={"WORLD_SIZE": "2", "RANK": "0"})
    with pytest.raises(ValueError, match="RANK=5"):
        D.init_distributed(
            env={"WORLD_SIZE": "2", "RANK": "5", "MASTER_ADDR": "x", "MASTER_PORT": "1"}
        )
