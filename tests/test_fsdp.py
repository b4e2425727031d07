"""FSDP2 on CPU: two gloo ranks run one real cell with `train.parallel=fsdp` (tests/cell_fixtures.py):
the loss trajectory of one process on the global batch, each rank holding half the parameters,
sharded checkpoints, and a preempted run resuming to the uninterrupted one's weights."""

from __future__ import annotations

import contextlib
import copy
import os
import pickle
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict
from torch.distributed.tensor import DTensor

from core.cell import CellRun, run_cell
from core.config import ExperimentConfig
from core.config._build import ConfigError
from core.io import read_json
from core.models.language_model import DecoderLM
from core.models.vlm import VideoVLM
from core.training import distributed as D
from core.training import sharded_checkpoint as SC
from core.training.checkpoint import (
    load_checkpoint,
    remove_temp_files,
    resume_points,
    save_checkpoint,
)
from core.training.fsdp import (
    apply_activation_checkpointing,
    find_blocks,
    find_vocab_layers,
    forward_methods,
    fsdp_units,
    remove_activation_checkpointing,
)
from core.training.schedule import is_reducer_parameter
from core.training.sharded_checkpoint import (
    ShardedCheckpointError,
    load_sharded_checkpoint,
    load_sharded_model_weights,
    read_run_state,
    save_sharded_checkpoint,
)
from core.training.trainer import TrainCallback
from tests.cell_fixtures import (
    InterruptAfter,
    Preempted,
    cell_config,
    final_weights,
    free_port,
    join_as_rank,
    make_cell,
    same_weights,
    train_rows,
    write_dataset,
)
from tests.helpers_model import tiny_config, video_batch
from tests.test_benchmarks_smoke import run_smoke

STEPS, INTERRUPT = 20, 10
TRAIN = {"steps": STEPS, "batch_size": 2, "checkpoint_every": 5, "log_every": 1}
FSDP = {**TRAIN, "parallel": "fsdp"}


class _Probe(CellRun):
    """A cell run that records, right after sharding, what each rank holds, and (with
    `record_resume`) the full model and optimizer state it resumed from."""

    record_resume = False
    resumed: dict[str, Any] = {}

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

    def resume(self, model, optimisation) -> None:
        super().resume(model, optimisation)
        if self.record_resume:
            full = StateDictOptions(full_state_dict=True, cpu_offload=True)
            msd, osd = get_state_dict(model, optimisation.optimizer, options=full)
            # a snapshot: AdamW's scalar step tensors are returned by reference
            self.resumed = copy.deepcopy({"step": self.state.step, "model": msd, "optimizer": osd})


def _rank(rank: int, world: int, port: int, cell_dir: str, interrupt: int, record: bool) -> None:
    join_as_rank(rank, world, port)
    run = _Probe(cell_dir, [InterruptAfter(interrupt)] if interrupt else [])
    run.record_resume = record
    try:
        result: Any = run.run()
    except Preempted:
        result = "preempted"
    D.mean_over_ranks([0.0])  # rank 0 has finished evaluating and writing
    torch.save(
        {"result": result, "probe": run.probe, "resumed": run.resumed},
        os.path.join(os.path.dirname(cell_dir), f"rank{rank}.pt"),
    )
    torch.distributed.destroy_process_group()
    # Leave without interpreter teardown: gloo work still referenced at finalization can abort the
    # process (pytorch/pytorch#179291; seen once here, SIGABRT after an FSDP run).
    os._exit(0)


def _spawn(cell_dir: Path, interrupt: int = 0, record: bool = False) -> list[dict[str, Any]]:
    args = (2, free_port(), str(cell_dir), interrupt, record)
    mp.spawn(_rank, args=args, nprocs=2, join=True)
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
        assert probe["blocks"] == 3 + 2  # 3 ViT blocks + 2 decoder blocks
        assert probe["units"] == probe["blocks"] + 2 + 1  # + token embedding, LM head, root
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


def test_last_pt_of_a_single_process_run_resumes_into_fsdp_shards(runs, tmp_path):
    """train.parallel is ignored by one process (it writes last.pt); relaunched on two ranks the
    cell loads that file into its shards (model and AdamW state) and goes on sharded."""
    cell_dir = make_cell(
        tmp_path / "mixed" / "cell", cell_config(runs["root"], "fsdpqa", train=FSDP)
    )
    with pytest.raises(Preempted):
        CellRun(cell_dir, [InterruptAfter(INTERRUPT)]).run()
    ck = load_checkpoint(cell_dir / "checkpoints" / "last.pt")
    assert ck["step"] == INTERRUPT
    resumed = _spawn(cell_dir, interrupt=15, record=True)[0]["resumed"]
    assert resumed["step"] == INTERRUPT
    assert same_weights(resumed["model"], ck["model"], rtol=0, atol=0)
    name_of = {
        i: n
        for g in ck["optimizer"]["param_groups"]
        for i, n in zip(g["params"], g["names"], strict=True)
    }
    assert {name_of[i] for i in ck["optimizer"]["state"]} == set(resumed["optimizer"]["state"])
    for i, state in ck["optimizer"]["state"].items():
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(resumed["optimizer"]["state"][name_of[i]][key], state[key]), key
    points = resume_points(cell_dir / "checkpoints")
    assert [(p.path.name, p.step) for p in points][:2] == [("last", 15), ("last.pt", INTERRUPT)]


def test_a_fine_tune_cell_starts_from_the_final_shards_of_its_fsdp_base(runs):
    base = runs["fsdp_dir"]  # a finished FSDP cell: checkpoints/last/, no last.pt
    train = {**TRAIN, "init_cell": base.name}
    cell_dir = make_cell(base.parent / "finetune", cell_config(runs["root"], "fsdpqa", train=train))
    start: dict[str, torch.Tensor] = {}

    class StartWeights(TrainCallback):
        def on_train_begin(self, state, model) -> None:
            start.update({k: v.detach().clone() for k, v in model.state_dict().items()})
            raise Preempted("seen the start")

    with pytest.raises(Preempted):
        CellRun(cell_dir, [StartWeights()]).run()
    final = load_sharded_model_weights(base / "checkpoints" / "last")
    kept = {k: v for k, v in final.items() if not is_reducer_parameter(k)}
    assert same_weights({k: start[k] for k in kept}, kept, rtol=0, atol=0)


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
        def on_train_begin(self, state, model) -> None:
            steps_seen.append(state.step)
            raise Preempted("stop after resuming")

    with warnings.catch_warnings(record=True) as caught, pytest.raises(Preempted):
        warnings.simplefilter("always")
        CellRun(cell_dir, [Watch(0)]).run()
    assert steps_seen == [15]  # prev/, written after step 15
    assert any("last" in str(w.message) and "do not load" in str(w.message) for w in caught)


# ---- activation checkpointing and block discovery (one process) -------------------------------
ARCH_BLOCKS = {  # outermost blocks of the tiny model: 4 ViT blocks + the fusion arch's
    "joint_decoder": {"ViTBlock": 4, "DecoderBlock": 2},
    "cross_attention": {"ViTBlock": 4, "DecoderBlock": 2, "CrossAttentionBlock": 2},
    "mot": {"ViTBlock": 4, "MoTBlock": 2},
    "moma": {"ViTBlock": 4, "MoMaBlock": 2},
}


def _tiny_model(arch: str) -> tuple[VideoVLM, dict]:
    # STTS at prune_at 1 on 4 blocks: dense, dense, key-biased, then packed (forward_packed)
    cfg = tiny_config(fusion={"arch": arch}, pruning={"method": "scorer", "ratio": 0.5})
    torch.manual_seed(0)
    return VideoVLM(cfg, 20), video_batch(cfg)


def _step(model: VideoVLM, batch: dict) -> tuple[float, dict[str, torch.Tensor], int]:
    """Loss, gradients, and the bytes autograd saved for backward in one training step."""
    saved = [0]

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved[0] += t.numel() * t.element_size()
        return t

    model.zero_grad(set_to_none=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(batch, step=3)
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return float(out.loss.detach()), grads, saved[0]


@pytest.mark.parametrize("arch", sorted(ARCH_BLOCKS))
def test_blocks_are_found_outermost_first_for_every_fusion_arch(arch):
    model, _ = _tiny_model(arch)
    kinds: dict[str, int] = {}
    for block in find_blocks(model):
        kinds[type(block).__name__] = kinds.get(type(block).__name__, 0) + 1
    assert kinds == ARCH_BLOCKS[arch]  # a MoT block's per-modality DecoderBlocks stay inside it
    assert forward_methods(model.vision.encoder.blocks[0]) == [
        "forward",
        "forward_packed",
        "forward_qk",
    ]
    assert [type(m).__name__ for m in find_vocab_layers(model)] == ["Embedding", "Linear"]


def test_tied_embeddings_stay_in_the_root_unit():
    cfg = tiny_config()
    assert len(find_vocab_layers(DecoderLM(cfg.lm, 20))) == 2
    assert find_vocab_layers(DecoderLM(cfg.lm, 20, tie_embeddings=True)) == []


@pytest.mark.parametrize("arch", sorted(ARCH_BLOCKS))
def test_activation_checkpointing_recomputes_blocks_and_gives_the_same_gradients(arch):
    model, batch = _tiny_model(arch)
    blocks = find_blocks(model)
    calls = [0] * len(blocks)  # Linear calls inside each block
    for i, block in enumerate(blocks):
        for m in block.modules():
            if isinstance(m, torch.nn.Linear):
                m.register_forward_hook(lambda *_, i=i: calls.__setitem__(i, calls[i] + 1))
    loss, grads, saved = _step(model, batch)
    plain_calls, calls[:] = list(calls), [0] * len(blocks)
    assert apply_activation_checkpointing(model) == len(blocks)
    loss_ac, grads_ac, saved_ac = _step(model, batch)
    # every block ran again in backward (recomputation stops once it has what backward needs)
    assert all(ac > plain for ac, plain in zip(calls, plain_calls, strict=True))
    assert saved_ac < saved  # ... because its activations were not kept
    assert loss_ac == pytest.approx(loss, rel=1e-6)
    assert grads_ac.keys() == grads.keys()
    for name, g in grads.items():
        torch.testing.assert_close(grads_ac[name], g, rtol=1e-5, atol=1e-7, msg=name)
    remove_activation_checkpointing(model)
    calls[:] = [0] * len(blocks)
    _step(model, batch)
    assert calls == plain_calls


# ---- config -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("train", "message"),
    [
        ({"parallel": "zero3"}, r"train.parallel='zero3': unknown parallelism. Fix: use one of"),
        ({"fsdp_cpu_offload": True}, r"train.fsdp_cpu_offload=True: CPU offload is part of FSDP"),
        (
            {"parallel": "fsdp", "fsdp_cpu_offload": True, "device": "cpu"},
            r"needs training on CUDA, but train.device='cpu'",
        ),
        ({"activation_checkpointing": "yes"}, r"train.activation_checkpointing='yes': expected"),
    ],
)
def test_bad_parallel_settings_are_precise_config_errors(train, message):
    with pytest.raises(ConfigError, match=message):
        ExperimentConfig.from_dict({"train": train})


def test_parallel_defaults_keep_ddp_and_no_checkpointing():
    t = ExperimentConfig.from_dict({}).train
    assert (t.parallel, t.fsdp_cpu_offload, t.activation_checkpointing) == ("ddp", False, False)


# ---- sharded checkpoints without a process group -----------------------------------------------
def _trained(seed: int) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 2))
    names = [n for n, _ in model.named_parameters()]
    opt = torch.optim.AdamW([{"params": list(model.parameters()), "names": names}], lr=0.1)
    model(torch.randn(3, 4)).sum().backward()
    opt.step()
    return model, opt


def _state(step: int) -> dict[str, Any]:
    return {"step": step, "config_hash": "abc", "rng": {"torch": torch.get_rng_state()}}


def test_sharded_save_keeps_previous_and_loads_model_and_optimizer_exactly(tmp_path):
    model, opt = _trained(0)
    save_sharded_checkpoint(tmp_path, model, opt, _state(1))
    save_sharded_checkpoint(tmp_path, model, opt, _state(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last", "prev"]
    assert [(p.path.name, p.step, p.sharded) for p in resume_points(tmp_path)] == [
        ("last", 2, True),
        ("prev", 1, True),
    ]
    fresh, fresh_opt = _trained(1)
    load_sharded_checkpoint(tmp_path / "last", fresh, fresh_opt)
    assert same_weights(fresh.state_dict(), model.state_dict(), rtol=0, atol=0)
    a, b = fresh_opt.state_dict(), opt.state_dict()
    for i in b["state"]:
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(a["state"][i][key], b["state"][i][key])
    assert same_weights(load_sharded_model_weights(tmp_path / "last"), model.state_dict())


def test_a_crash_mid_save_never_leaves_a_trusted_half_checkpoint(tmp_path, monkeypatch):
    model, opt = _trained(0)
    save_sharded_checkpoint(tmp_path, model, opt, _state(1))
    save_sharded_checkpoint(tmp_path, model, opt, _state(2))

    def killed(*args, **kwargs):
        raise Preempted("killed while writing state.pt")

    with monkeypatch.context() as m:  # shards written, run state not: nothing is promoted
        m.setattr(SC, "atomic_write", killed)
        with pytest.raises(Preempted):
            save_sharded_checkpoint(tmp_path, model, opt, _state(3))
    assert [p.step for p in resume_points(tmp_path)] == [2, 1]
    real_replace = os.replace

    def replace_then_die(src, dst):  # killed between renaming last → prev and temp → last
        if Path(dst).name == "last":
            raise Preempted("killed between renames")
        real_replace(src, dst)

    with monkeypatch.context() as m:
        m.setattr(SC.os, "replace", replace_then_die)
        with pytest.raises(Preempted):
            save_sharded_checkpoint(tmp_path, model, opt, _state(4))
    assert [(p.path.name, p.step) for p in resume_points(tmp_path)] == [("prev", 2)]
    removed = {p.name for p in remove_temp_files(tmp_path)}
    assert removed == {".last.3.tmp", ".last.4.tmp", ".prev.4.tmp"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prev"]


def test_resume_points_take_the_newest_of_either_kind_and_warn_on_unreadable(tmp_path):
    model, opt = _trained(0)
    save_checkpoint(tmp_path / "last.pt", {"model": model.state_dict(), **_state(4)})
    save_sharded_checkpoint(tmp_path, model, opt, _state(8))
    assert [(p.path.name, p.step) for p in resume_points(tmp_path)] == [("last", 8), ("last.pt", 4)]
    (tmp_path / "last" / "state.pt").write_bytes(b"torn")
    with pytest.warns(UserWarning, match=r"last is unreadable .*falling back to last.pt"):
        assert [p.path.name for p in resume_points(tmp_path)] == ["last.pt"]


class _Touch:
    """Unpickling it with the full unpickler creates a file: a stand-in for running any code."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


@pytest.mark.filterwarnings("ignore:torch.distributed is disabled")
def test_sharded_loading_never_runs_code_from_the_checkpoint(tmp_path):
    model, opt = _trained(0)
    marker = tmp_path / "code-ran"
    evil = tmp_path / "evil"
    # a non-tensor value that runs code when unpickled (DCP's default loader unpickles it freely)
    torch.distributed.checkpoint.save(
        {"model": model.state_dict(), "extra": _Touch(marker)}, checkpoint_id=evil, no_dist=True
    )
    with pytest.raises(ShardedCheckpointError, match="Unsupported global|weights_only"):
        SC._dcp_load({"model": model.state_dict(), "extra": None}, evil, no_dist=True)
    assert not marker.exists()
    # metadata naming an arbitrary callable
    save_sharded_checkpoint(tmp_path, model, opt, _state(1))
    (tmp_path / "last" / ".metadata").write_bytes(pickle.dumps(_Touch(marker)))
    with pytest.raises(ShardedCheckpointError, match="not DCP metadata; refusing to load it"):
        load_sharded_checkpoint(tmp_path / "last", model, opt)
    assert not marker.exists()
    # negative control: DCP's own reader would have run it
    with contextlib.suppress(BaseException):
        torch.distributed.checkpoint.FileSystemReader(tmp_path / "last").read_metadata()
    assert marker.exists()


# ---- the memory benchmark ---------------------------------------------------------------------
def test_memory_benchmark_smoke_mode_reports_every_mode_on_the_same_model(tmp_path):
    text = run_smoke("fsdp_memory.py", tmp_path)
    assert "Machine:" in text
    rows = {
        cells[0]: cells
        for line in text.splitlines()
        if line.startswith("| ") and not line.startswith("| mode")
        for cells in [[c.strip() for c in line.strip("|").split("|")]]
    }
    assert set(rows) == {"ddp", "fsdp", "fsdp+ac"}
    assert len({row[-1] for row in rows.values()}) == 1  # same final loss: same model and data
