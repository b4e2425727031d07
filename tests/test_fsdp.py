"""FSDP2 on CPU: two gloo ranks run one real cell with `train.parallel=fsdp` (tests/cell_fixtures.py):
the loss trajectory of one process on the global batch, each rank holding half the parameters,
sharded checkpoints, and a preempted run resuming to the uninterrupted one's weights."""

from __future__ import annotations

import os
import socket
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp
from torch.distributed.tensor import DTensor

from core.cell import CellRun, run_cell
from core.io import read_json
from core.training import distributed as D
from core.training.fsdp import find_blocks, fsdp_units
from core.training.sharded_checkpoint import load_sharded_model_weights, read_run_state
from tests.cell_fixtures import (
    InterruptAfter,
    Preempted,
    cell_config,
    final_weights,
    make_cell,
    same_weights,
    train_rows,
    write_dataset,
)

STEPS, INTERRUPT = 20, 10
TRAIN = {"steps": STEPS, "batch_size": 2, "checkpoint_every": 5, "log_every": 1}
FSDP = {**TRAIN, "parallel": "fsdp"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Probe(CellRun):
    """A cell run that records, right after sharding, what each rank holds."""

    def shard(self, model, device, dist) -> None:
        super().shard(model, device, dist)
        params = list(model.parameters())
        self.probe = {
            "local": sum(p.to_local().numel() for p in params if isinstance(p, DTensor)),
            "total": sum(p.numel() for p in params),
            "all_dtensor": all(isinstance(p, DTensor) for p in params),
            "units": sum(1 for _ in fsdp_units(model)),
            "blocks": len(find_blocks(model)),
        }


def _rank(rank: int, world: int, port: int, cell_dir: str, interrupt: int) -> None:
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        WANDB_MODE="disabled",
    )
    torch.set_num_threads(1)
    run = _Probe(cell_dir, [InterruptAfter(interrupt)] if interrupt else [])
    try:
        result: Any = run.run()
    except Preempted:
        result = "preempted"
    D.mean_over_ranks([0.0])  # rank 0 has finished evaluating and writing
    torch.save(
        {"result": result, "probe": run.probe},
        os.path.join(os.path.dirname(cell_dir), f"rank{rank}.pt"),
    )
    torch.distributed.destroy_process_group()


def _spawn(cell_dir: Path, interrupt: int = 0) -> list[dict[str, Any]]:
    mp.spawn(_rank, args=(2, _free_port(), str(cell_dir), interrupt), nprocs=2, join=True)
    return [torch.load(cell_dir.parent / f"rank{r}.pt", weights_only=False) for r in (0, 1)]


def _losses(cell_dir: Path) -> list[float]:
    return [r["train/loss"] for r in train_rows(cell_dir)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """FSDP (2 ranks × 2 clips), one process on the global batch (4 clips), and an FSDP run
    preempted after step INTERRUPT then resumed."""
    threads = torch.get_num_threads()
    tmp = tmp_path_factory.mktemp("fsdp")
    root = write_dataset(tmp / "data", "fsdpqa")
    with pytest.MonkeyPatch.context() as mpatch:
        mpatch.delenv("WANDB_MODE", raising=False)
        fsdp_dir = make_cell(tmp / "fsdp" / "cell", cell_config(root, "fsdpqa", train=FSDP))
        fsdp = _spawn(fsdp_dir)
        one_dir = make_cell(
            tmp / "one" / "cell", cell_config(root, "fsdpqa", train={**TRAIN, "batch_size": 4})
        )
        one = run_cell(one_dir)
        cut_dir = make_cell(tmp / "cut" / "cell", cell_config(root, "fsdpqa", train=FSDP))
        cut = _spawn(cut_dir, interrupt=INTERRUPT)
        cut_checkpoint = read_run_state(cut_dir / "checkpoints" / "last")["step"]
        resumed = _spawn(cut_dir)
    torch.set_num_threads(threads)
    return {
        "root": root,
        "fsdp_dir": fsdp_dir,
        "fsdp": fsdp,
        "one_dir": one_dir,
        "one": one,
        "cut_dir": cut_dir,
        "cut": cut,
        "cut_checkpoint": cut_checkpoint,
        "resumed": resumed,
    }


def test_fsdp_ranks_match_one_process_on_the_global_batch(runs, tmp_path):
    fsdp_dir, one_dir = runs["fsdp_dir"], runs["one_dir"]
    fsdp, one = _losses(fsdp_dir), _losses(one_dir)
    assert len(fsdp) == len(one) == STEPS
    assert fsdp == pytest.approx(one, rel=1e-4)
    final = load_sharded_model_weights(fsdp_dir / "checkpoints" / "last")
    # Float noise only (as for DDP: Adam normalises ~1e-10 gradient noise into visible steps).
    assert same_weights(final, final_weights(one_dir), rtol=1e-3, atol=1e-4)
    reports = runs["fsdp"]
    assert reports[1]["result"] == {} and reports[0]["result"] == read_json(
        fsdp_dir / "result.json"
    )
    got, ref = reports[0]["result"]["metrics"], runs["one"]["metrics"]
    assert got["accuracy"] == ref["accuracy"]
    assert got["val_loss"] == pytest.approx(ref["val_loss"], rel=1e-4)
    # Negative control: one process on rank 0's half of each batch ends elsewhere.
    half_dir = make_cell(
        tmp_path / "half" / "cell", cell_config(runs["root"], "fsdpqa", train=TRAIN)
    )
    run_cell(half_dir)
    assert _losses(half_dir)[5:] != pytest.approx(one[5:], rel=1e-2)


def test_each_rank_holds_half_of_every_parameter_in_per_block_units(runs):
    for report in runs["fsdp"]:
        probe = report["probe"]
        assert probe["all_dtensor"]
        assert probe["blocks"] == 2 + 2  # 2 ViT blocks + 2 decoder blocks
        assert probe["units"] == probe["blocks"] + 1  # and the root
        # dim-0 shards: half of each parameter, rounded up on rank 0
        assert probe["local"] <= probe["total"] // 2 + 1000
    assert sum(r["probe"]["local"] for r in runs["fsdp"]) == runs["fsdp"][0]["probe"]["total"]


def test_sharded_checkpoints_are_written_by_every_rank_not_last_pt(runs):
    ck = runs["fsdp_dir"] / "checkpoints"
    assert sorted(p.name for p in ck.iterdir()) == ["last", "prev"]  # no temp dirs left
    assert {p.name for p in (ck / "last").iterdir()} == {
        ".metadata",
        "__0_0.distcp",
        "__1_0.distcp",
        "state.pt",
    }
    last, prev = read_run_state(ck / "last"), read_run_state(ck / "prev")
    assert (last["step"], prev["step"]) == (STEPS, 15)
    assert last["config_hash"] == read_json(runs["fsdp_dir"] / "result.json")["cell_id"]


def test_preempted_fsdp_cell_resumes_to_the_uninterrupted_weights(runs):
    cut_dir = runs["cut_dir"]
    assert [r["result"] for r in runs["cut"]] == ["preempted", "preempted"]
    assert runs["cut_checkpoint"] == INTERRUPT
    rows = train_rows(cut_dir)
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))  # redone rows replaced
    assert _losses(cut_dir) == pytest.approx(_losses(runs["fsdp_dir"]), rel=1e-6, abs=1e-7)
    resumed = load_sharded_model_weights(cut_dir / "checkpoints" / "last")
    uninterrupted = load_sharded_model_weights(runs["fsdp_dir"] / "checkpoints" / "last")
    assert same_weights(resumed, uninterrupted)
    result = runs["resumed"][0]["result"]
    assert result["metrics"]["val_loss"] == pytest.approx(
        runs["fsdp"][0]["result"]["metrics"]["val_loss"], rel=1e-6
    )
    assert read_json(cut_dir / "status.json")["attempts"] == 2


def test_a_torn_sharded_checkpoint_falls_back_to_the_previous_one_in_one_process(runs, tmp_path):
    """Sharded checkpoints also load into a plain model (one process): corrupt a shard of last/
    and the cell resumes from prev/ with a warning naming last/."""
    import shutil

    cell_dir = tmp_path / "cell"
    shutil.copytree(runs["fsdp_dir"], cell_dir, ignore=shutil.ignore_patterns("result.json"))
    shard = cell_dir / "checkpoints" / "last" / "__1_0.distcp"
    shard.write_bytes(shard.read_bytes()[:100])
    steps_seen: list[int] = []

    class Watch(InterruptAfter):
        def on_train_begin(self, state) -> None:
            steps_seen.append(state.step)
            raise Preempted("stop after resuming")

    with warnings.catch_warnings(record=True) as caught, pytest.raises(Preempted):
        warnings.simplefilter("always")
        CellRun(cell_dir, [Watch(0)]).run()
    assert steps_seen == [15]  # prev/, written after step 15
    assert any("last" in str(w.message) and "do not load" in str(w.message) for w in caught)
