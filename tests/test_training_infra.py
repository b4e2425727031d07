"""Checkpoints, RNG capture, optimizer groups, LR schedule and seeding."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
import torch
from torch import nn

from core.config.train import TrainConfig
from core.training import checkpoint as ck
from core.training.batches import ResumableBatchSampler
from core.training.schedule import build_optimizer, build_scheduler, lr_factor
from core.training.seeding import seed_everything


def _draws() -> tuple:
    return (random.random(), float(np.random.rand()), float(np.random.randn()), torch.rand(3))


# ---- checkpoints ----------------------------------------------------------------------------
def test_rng_state_roundtrips_through_weights_only_checkpoint(tmp_path):
    seed_everything(3)
    np.random.randn()  # leave a cached gaussian in numpy's state
    path = ck.save_checkpoint(tmp_path / "last.pt", {"rng": ck.capture_rng_state(), "step": 7})
    expected = _draws()
    _draws()  # advance every generator further
    state = ck.load_checkpoint(path)
    ck.restore_rng_state(state["rng"])
    got = _draws()
    assert got[:3] == expected[:3]
    assert torch.equal(got[3], expected[3])
    assert state["step"] == 7


def test_checkpoint_model_optimizer_scheduler_roundtrip(tmp_path):
    torch.manual_seed(0)
    cfg = TrainConfig(lr=1e-2, warmup_steps=2, steps=10)

    def make():
        model = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 1))
        opt = build_optimizer(model, cfg)
        return model, opt, build_scheduler(opt, cfg, 10)

    def step(model, opt, sched, seed):
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(16, 4, generator=g)
        loss = model(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()

    m1, o1, s1 = make()
    for i in range(3):
        step(m1, o1, s1, i)
    state = {"model": m1.state_dict(), "optimizer": o1.state_dict(), "scheduler": s1.state_dict()}
    ck.save_checkpoint(tmp_path / "last.pt", state)
    m2, o2, s2 = make()
    loaded = ck.load_checkpoint(tmp_path / "last.pt")
    m2.load_state_dict(loaded["model"])
    o2.load_state_dict(loaded["optimizer"])
    s2.load_state_dict(loaded["scheduler"])
    for i in range(3, 6):
        step(m1, o1, s1, i)
        step(m2, o2, s2, i)
    for a, b in zip(m1.parameters(), m2.parameters(), strict=True):
        assert torch.equal(a, b)
    assert o1.param_groups[0]["lr"] == o2.param_groups[0]["lr"]


def test_save_keeps_previous_and_latest_falls_back_on_corruption_with_a_warning(tmp_path):
    d = tmp_path / "checkpoints"
    ck.save_checkpoint(d / "last.pt", {"step": 1})
    ck.save_checkpoint(d / "last.pt", {"step": 2})
    assert ck.load_checkpoint(d / "prev.pt")["step"] == 1
    path, state = ck.load_latest_checkpoint(d)
    assert path == d / "last.pt" and state["step"] == 2
    assert sorted(p.name for p in d.iterdir()) == ["last.pt", "prev.pt"]  # no temp files left
    (d / "last.pt").write_bytes(b"torn")
    with pytest.warns(UserWarning, match=r"last\.pt is unreadable .*falling back to prev\.pt"):
        path, state = ck.load_latest_checkpoint(d)
    assert path == d / "prev.pt" and state["step"] == 1
    (d / "prev.pt").write_bytes(b"torn too")
    with pytest.warns(UserWarning, match="training restarts at step 0"):
        assert ck.load_latest_checkpoint(d) is None
    assert ck.load_latest_checkpoint(tmp_path / "empty") is None


def test_temp_files_of_interrupted_writes_are_removed(tmp_path):
    d = tmp_path / "checkpoints"
    ck.save_checkpoint(d / "last.pt", {"step": 1})
    (d / ".last.pt.abc123.tmp").write_bytes(b"half a checkpoint")
    assert [p.name for p in ck.remove_temp_files(d)] == [".last.pt.abc123.tmp"]
    assert sorted(p.name for p in d.iterdir()) == ["last.pt"]
    assert ck.remove_temp_files(tmp_path / "none") == []


def test_load_refuses_arbitrary_objects(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"obj": _Pickled()}, path)
    with pytest.raises(Exception, match="weights_only|Unsupported|global"):
        ck.load_checkpoint(path)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        ck.load_checkpoint(tmp_path / "missing.pt")


class _Pickled:
    pass


# ---- optimizer and schedule ------------------------------------------------------------------
class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.tok_embedding = nn.Embedding(10, 8)
        self.patch_embed = nn.Linear(12, 8)
        self.norm = nn.LayerNorm(8)
        self.proj = nn.Linear(8, 8)
        self.reducer = nn.Sequential(nn.Linear(8, 4), nn.Linear(4, 1))
        self.reducers_stats = nn.Linear(8, 8)  # not the reducer: the name only contains it
        self.frozen = nn.Linear(8, 8)
        self.frozen.requires_grad_(False)


def _groups_by_name(opt) -> dict[str, tuple[float, float]]:
    return {n: (g["lr"], g["weight_decay"]) for g in opt.param_groups for n in g["names"]}


@pytest.mark.parametrize("as_module", [True, False])
def test_param_groups_decay_and_reducer_lr(as_module):
    model = _Tiny()
    cfg = TrainConfig(lr=1e-3, reducer_lr=5e-3, weight_decay=0.1)
    source = model if as_module else model.named_parameters()
    groups = _groups_by_name(build_optimizer(source, cfg))
    assert groups["proj.weight"] == (1e-3, 0.1)
    assert groups["patch_embed.weight"] == (1e-3, 0.1)  # a projection, not an embedding table
    assert groups["proj.bias"] == (1e-3, 0.0)
    assert groups["norm.weight"] == (1e-3, 0.0)
    assert groups["tok_embedding.weight"] == (1e-3, 0.0)
    assert groups["reducer.0.weight"] == (5e-3, 0.1)
    assert groups["reducer.1.bias"] == (5e-3, 0.0)
    assert groups["reducers_stats.weight"] == (1e-3, 0.1)
    assert not any(n.startswith("frozen") for n in groups)


def test_module_type_decides_embeddings_regardless_of_name():
    model = nn.ModuleDict({"lookup": nn.Embedding(5, 4), "lin": nn.Linear(4, 4)})
    groups = _groups_by_name(build_optimizer(model, TrainConfig()))
    assert groups["lookup.weight"][1] == 0.0
    assert groups["lin.weight"][1] == TrainConfig().weight_decay


def test_optimizer_refuses_fully_frozen_model():
    model = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        build_optimizer(model, TrainConfig())


def test_schedule_warmup_then_cosine_to_min_ratio_per_group():
    model = _Tiny()
    cfg = TrainConfig(
        lr=1e-3, reducer_lr=4e-3, warmup_steps=4, reducer_warmup_steps=8, min_lr_ratio=0.1
    )
    opt = build_optimizer(model, cfg)
    sched = build_scheduler(opt, cfg, total_steps=20)
    lrs = []
    for _ in range(20):
        lrs.append({g["group"]: g["lr"] for g in opt.param_groups})
        opt.step()
        sched.step()
    main = [x["main/decay"] for x in lrs]
    reducer = [x["reducer/decay"] for x in lrs]
    assert main[:4] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3])
    assert main[4] == pytest.approx(1e-3)
    assert main[-1] == pytest.approx(1e-4)
    assert reducer[:8] == pytest.approx([4e-3 * (i + 1) / 8 for i in range(8)])  # its own warm-up
    assert reducer[8] == pytest.approx(4e-3)
    assert reducer[-1] == pytest.approx(4e-4)
    follows = TrainConfig(lr=1e-3, reducer_lr=4e-3, warmup_steps=4)  # None: the main warm-up
    opt = build_optimizer(_Tiny(), follows)
    build_scheduler(opt, follows, total_steps=20)
    assert {g["group"]: g["lr"] for g in opt.param_groups}["reducer/decay"] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(main[4:], main[5:], strict=False))
    mid = 4 + (20 - 4 - 1) / 2
    assert lr_factor(int(mid), 4, 20, 0.1) == pytest.approx(
        0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 7 / 15))
    )


def test_scheduler_state_resumes_same_lrs():
    cfg = TrainConfig(warmup_steps=3)
    opt = build_optimizer(nn.Linear(3, 3), cfg)
    sched = build_scheduler(opt, cfg, 12)
    for _ in range(5):
        opt.step()
        sched.step()
    state = sched.state_dict()
    json.dumps(state)  # plain data only: survives weights_only loading
    opt2 = build_optimizer(nn.Linear(3, 3), cfg)
    sched2 = build_scheduler(opt2, cfg, 12)
    opt2.load_state_dict(opt.state_dict())
    sched2.load_state_dict(state)
    for _ in range(4):
        opt.step(), sched.step(), opt2.step(), sched2.step()
        assert opt.param_groups[0]["lr"] == opt2.param_groups[0]["lr"]


def test_schedule_edge_cases():
    assert lr_factor(0, 0, 1, 0.1) == 1.0  # a single step with no warm-up runs at the base lr
    assert lr_factor(0, 5, 5, 0.1) == pytest.approx(0.2)  # warm-up only
    assert lr_factor(9, 0, 10, 0.3) == pytest.approx(0.3)


# ---- seeding ------------------------------------------------------------------------------
def test_seed_everything_repeats_and_differs_by_seed():
    seed_everything(5)
    a = _draws()
    seed_everything(5)
    b = _draws()
    seed_everything(6)
    c = _draws()
    assert a[:3] == b[:3] and torch.equal(a[3], b[3])
    assert a[:3] != c[:3]
    with pytest.raises(ValueError, match="train.seed"):
        seed_everything(-1)


# ---- resumable batch order ------------------------------------------------------------------
def _steps(sampler) -> list[list[int]]:
    return [list(b) for b in sampler]


def test_resumed_sampler_replays_exactly_the_uninterrupted_batches():
    full = _steps(ResumableBatchSampler(23, 4, seed=7, total_steps=12))  # 5 steps per epoch
    epochs = [sum(full[e * 5 : (e + 1) * 5], []) for e in range(2)]
    assert len(set(epochs[0])) == 20 and epochs[0] != epochs[1]  # a fresh permutation per epoch
    for start in (0, 3, 5, 11):
        resumed = ResumableBatchSampler(23, 4, seed=7, start_step=start, total_steps=12)
        assert _steps(resumed) == full[start:]
    assert _steps(ResumableBatchSampler(23, 4, seed=8, total_steps=12)) != full


def test_ranks_take_disjoint_slices_of_each_global_batch():
    one = _steps(ResumableBatchSampler(24, 4, seed=1, total_steps=3, world_size=1))
    ranks = [
        _steps(ResumableBatchSampler(24, 2, seed=1, total_steps=3, rank=r, world_size=2))
        for r in range(2)
    ]
    for step in range(3):
        assert ranks[0][step] + ranks[1][step] == one[step]
    with pytest.raises(ValueError, match="fewer than one global batch"):
        ResumableBatchSampler(3, 2, seed=0, world_size=2)
