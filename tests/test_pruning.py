"""In-ViT token reduction: budgets, physical removal, STTS specifics and the baselines' rules."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from core import budget
from core.config import ConfigError, ExperimentConfig
from core.layers.packing import build_pack_plan, first_fit_decreasing
from core.layers.windows import WindowGrid
from core.models.vision.vit import ViTBlock
from core.models.vision_tower import VisionTower
from tests.helpers_model import tiny_config, video_batch

METHODS = ["random", "easy", "heuristic", "scorer", "oracle"]


def _tower(method: str, ratio: float, seed: int = 0, **extra) -> VisionTower:
    torch.manual_seed(seed)
    data = {"ground_truth": method == "oracle", **extra.pop("data", {})}
    cfg = tiny_config(pruning={"method": method, "ratio": ratio, **extra}, data=data)
    return VisionTower(cfg)


def _encode(tower: VisionTower, batch: dict, train: bool = False):
    tower.train(train)
    om = batch.get("object_mask")
    return tower(
        batch["pixel_values"],
        batch["frame_mask"],
        sample_keys=batch["sample_key"],
        object_mask=om,
        step=0,
    )


def _with_objects(batch: dict) -> dict:
    b, f, _, s, _ = batch["pixel_values"].shape
    om = torch.zeros(b, f, s, s, dtype=torch.bool)
    om[:, :, 0:8, 16:24] = True
    return {**batch, "object_mask": om}


def test_ratio_zero_and_none_are_the_unpruned_model():
    batch = video_batch(tiny_config())
    ref = _encode(_tower("none", 0.0), batch).features
    for method in ["scorer", "random", "easy"]:
        tower = _tower(method, 0.0)
        tower.load_state_dict(_tower("none", 0.0).state_dict(), strict=False)
        assert tower.reducer is None
        assert torch.equal(_encode(tower, batch).features, ref)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("ratio", [0.3, 0.5, 0.7])
@pytest.mark.parametrize("frames", [2, 3, 4])
def test_kept_count_matches_the_single_formula(method, ratio, frames):
    torch.manual_seed(0)
    sections = {
        "pruning": {"method": method, "ratio": ratio},
        "data": {"max_frames": frames, "ground_truth": method == "oracle"},
    }
    prunable = (frames - 1) * 4 if method == "scorer" else frames * 4
    if budget.pruned_tokens(frames, 4, ratio) > prunable:
        # STTS keeps frame 0 whole; a budget it cannot meet is refused before any model is built
        with pytest.raises(ConfigError, match="pruning.ratio"):
            tiny_config(**sections)
        return
    cfg = tiny_config(**sections)
    tower = VisionTower(cfg)
    batch = _with_objects(video_batch(cfg, batch=3))
    batch["frame_mask"][1, -1] = False
    out = _encode(tower, batch, train=True)
    expected = budget.kept_tokens(frames, 4, ratio)
    assert out.num_tokens == expected == cfg.kept_tokens()  # the batch's static slots
    assert torch.isfinite(out.features).all()
    own = budget.clip_kept_tokens([frames, frames - 1, frames], frames, 4, ratio)
    assert out.diagnostics["keep"].flatten(1).sum(1).tolist() == own  # each clip's own budget
    assert out.valid.sum(1).tolist() == own and (own[1] < expected or frames == 2)


def test_scorer_keeps_the_first_frame_whole_and_prunes_padding_first():
    tower = _tower("scorer", 0.7)
    batch = video_batch(tower_cfg := tiny_config(), batch=3)
    del tower_cfg
    batch["frame_mask"][2, 2:] = False
    keep = _encode(tower, batch).diagnostics["keep"]
    assert keep[:2, 0].all()  # 4 frames: 11 of 16 pruned, none of frame 0
    # clip 2 has 2 real frames: its own budget keeps 8 − ⌊8·0.7⌋ = 3 windows, below frame 0's 4,
    # so frame 0 is pruned last (protection is a priority) and nothing of frames 1..3 survives
    assert keep[2, 0].sum() == 3 and not keep[2, 1:].any()


def test_packed_attention_equals_each_frame_alone():
    torch.manual_seed(0)
    win = WindowGrid(4, 2)
    block = ViTBlock(16, 2, 32)
    x = torch.randn(5, 16, 16)
    keep = torch.rand(5, 4) > 0.5
    keep[3] = False  # a frame with no survivors: empty slots must not produce NaN
    keep[0] = True
    plan = build_pack_plan(keep, win)
    flat = x[plan.token_frame, plan.token_patch]
    packed = block.forward_packed(flat, plan)
    assert torch.isfinite(packed).all()
    for frame in range(5):
        sel = plan.token_frame == frame
        if sel.any():
            alone = block(flat[sel][None])[0]
            torch.testing.assert_close(packed[sel], alone, atol=1e-5, rtol=1e-5)
    # negative control: without the block-diagonal mask frames would mix
    plan.attn_mask = torch.ones_like(plan.attn_mask)
    mixed = block.forward_packed(flat, plan)
    assert not torch.allclose(mixed, packed, atol=1e-4)


def test_pack_unpack_roundtrip_and_first_fit_decreasing():
    rows, offsets, n = first_fit_decreasing([9, 0, 7, 3, 16, 1], capacity=16)
    assert n == 3 and rows[1] == -1
    used: dict[int, list[tuple[int, int]]] = {}
    for i, c in enumerate([9, 0, 7, 3, 16, 1]):
        if c:
            used.setdefault(rows[i], []).append((offsets[i], offsets[i] + c))
    for spans in used.values():
        spans.sort()
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False))
        assert spans[-1][1] <= 16
    keep = torch.tensor([[True, False, True, True], [False, True, False, False]])
    plan = build_pack_plan(keep, WindowGrid(4, 2))
    flat = torch.randn(plan.num_tokens, 3)
    assert torch.equal(plan.unpack(plan.pack(flat)), flat)


def test_scorer_gradients_flow_through_the_bias_and_the_aux_loss():
    batch = video_batch(tiny_config())
    # task path only (aux off): gradient reaches the scorer through the key bias
    tower = _tower("scorer", 0.5, scorer={"aux_coef": 0.0})
    out = _encode(tower, batch, train=True)
    assert out.aux_loss is None
    out.features.pow(2).sum().backward()
    grads = [p.grad for p in tower.reducer.parameters()]
    assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0
    # aux path only
    for loss in ("bce_logits", "mse_sigmoid"):
        tower = _tower("scorer", 0.5, scorer={"aux_coef": 0.5, "aux_loss": loss})
        out = _encode(tower, batch, train=True)
        out.aux_loss.backward()
        assert sum(p.grad.abs().sum() for p in tower.reducer.mlp.parameters()) > 0, loss


def _scorer_inputs(hidden: torch.Tensor, training: bool = True) -> tuple:
    from core.pruning.base import ReductionInputs

    cfg = tiny_config(pruning={"method": "scorer", "ratio": 0.5})
    tower = VisionTower(cfg)
    b, f = hidden.shape[:2]
    inputs = ReductionInputs(
        hidden=hidden,
        embeddings=hidden.detach(),
        frame_mask=torch.ones(b, f, dtype=torch.bool),
        windows=tower.windows,
        n_prune=tower.num_pruned(f),
        training=training,
        sample_keys=torch.arange(b),
    )
    return tower.reducer, inputs


@pytest.mark.parametrize("stop", [True, False])
def test_the_aux_target_carries_no_gradient_into_the_vit_by_default(stop):
    hidden = torch.randn(2, 4, 16, 32, requires_grad=True)
    scorer, inputs = _scorer_inputs(hidden)
    scorer.options.aux_stop_gradient = stop
    logits = scorer.logits(hidden, inputs).detach()  # only the target's path to the ViT remains
    loss = scorer.aux_loss(logits, inputs)
    if loss.requires_grad:  # with the target detached nothing here depends on the ViT
        loss.backward()
    reached = hidden.grad is not None and bool(hidden.grad.abs().sum() > 0)
    assert reached is (not stop)  # the default (stop=True) never trains the ViT to erase motion
    assert scorer.__class__.Config().aux_stop_gradient is True


def test_saturated_scores_are_detected_and_named_in_the_warnings():
    scorer, inputs = _scorer_inputs(torch.randn(2, 4, 16, 32))
    sel = scorer.select(inputs)
    assert sel.diagnostics["saturated_fraction"] == 0.0
    assert scorer.warnings({"reducer/saturated_fraction": 0.0}) == []
    with torch.no_grad():
        scorer.mlp[-1].bias.fill_(-100.0)  # every score exactly 0: a dead scorer
    sel = scorer.select(inputs)
    assert sel.diagnostics["saturated_fraction"] == 1.0 and sel.diagnostics["tied_fraction"] > 0.9
    (warning,) = scorer.warnings({"reducer/saturated_fraction": 1.0})
    assert "STTS scorer saturated: 100%" in warning and "aux_loss=bce_logits" in warning


def test_tied_scores_are_not_pruned_in_raster_order():
    scorer, inputs = _scorer_inputs(torch.randn(3, 4, 16, 32), training=False)
    with torch.no_grad():
        scorer.mlp[-1].weight.zero_()  # every score the same: all priorities tie
    keep = scorer.select(inputs).keep  # (3 clips, 4 frames, 4 windows), 8 of 16 pruned
    per_frame = keep.sum(-1)
    assert (per_frame[:, 0] == 4).all()  # the first frame stays whole
    raster = torch.tensor([4, 0, 0, 4])  # what a stable sort keeps: frames 1–2 dropped whole
    assert not all(torch.equal(row, raster) for row in per_frame)
    assert not torch.equal(keep[0], keep[1])  # each clip draws its own tie-break
    assert torch.equal(keep, scorer.select(inputs).keep)  # deterministic for the same clips


@pytest.mark.parametrize(("loss", "dies"), [("mse_sigmoid", True), ("bce_logits", False)])
def test_on_repeating_frames_only_the_reference_aux_loss_saturates_the_scorer(loss, dies):
    """The audit's collapse (targets ≈ 0 on bit-identical frames, Adam, MSE on a sigmoid) and the
    default loss that prevents it, on the scorer alone."""
    torch.manual_seed(0)
    frame = torch.randn(1, 1, 16, 32)
    hidden = frame.expand(4, 4, 16, 32).contiguous()  # every frame identical: targets 0
    scorer, inputs = _scorer_inputs(hidden)
    scorer.options.aux_loss = loss
    opt = torch.optim.Adam(scorer.parameters(), lr=1e-2)
    for _ in range(80):
        opt.zero_grad()
        scorer.aux_loss(scorer.logits(hidden, inputs), inputs).backward()
        opt.step()
    saturated = scorer.select(inputs).diagnostics["saturated_fraction"]
    assert (saturated > 0.9) is dies and (saturated < 0.1) is (not dies)


def test_key_bias_can_be_switched_off():
    scorer, inputs = _scorer_inputs(torch.randn(2, 4, 16, 32))
    assert scorer.select(inputs).key_bias is not None
    scorer.options.key_bias = False
    assert scorer.select(inputs).key_bias is None


def test_no_vit_block_after_hard_removal_is_refused_naming_the_fix():
    with pytest.raises(ConfigError, match=r"pruning.prune_at=2: leaves no ViT block after"):
        tiny_config(pruning={"method": "scorer", "ratio": 0.5, "prune_at": 2})  # depth 4
    tiny_config(pruning={"method": "scorer", "ratio": 0.5, "prune_at": 1})  # blocks 3.. run after
    with pytest.raises(ConfigError, match=r"use pruning.prune_at between 0 and 2"):
        tiny_config(pruning={"method": "random", "ratio": 0.5, "prune_at": 3})


def _moving_square_clip(frames: int = 4, size: int = 32) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    background = torch.rand(3, size, size, generator=gen) * 0.2
    clip = background.repeat(frames, 1, 1, 1)
    for t in range(frames):
        x0 = 2 + 5 * t
        clip[t, 0, 2:8, x0 : x0 + 6] = 1.0  # a bright square moving right in the top row
    return clip


def test_easy_prunes_the_static_windows_of_a_clip_with_one_moving_square():
    torch.manual_seed(0)
    cfg = tiny_config(
        pruning={"method": "easy", "ratio": 0.375, "easy": {"new_ref_threshold": 0.5}}
    )
    tower = VisionTower(cfg)
    clip = _moving_square_clip()
    batch = {
        "pixel_values": clip[None],
        "frame_mask": torch.ones(1, 4, dtype=torch.bool),
        "sample_key": torch.zeros(1, dtype=torch.long),
    }
    keep = _encode(tower, batch).diagnostics["keep"][0]  # (F, W)
    win = tower.windows
    pixels = win.gather(
        clip.permute(0, 2, 3, 1)
        .reshape(4, 32, 32, 3)
        .unfold(1, 8, 8)
        .unfold(2, 8, 8)
        .reshape(4, 16, -1)
    )
    changed = torch.zeros(4, 4, dtype=torch.bool)
    changed[1:] = (pixels[1:] - pixels[:-1]).abs().flatten(2).amax(-1) > 0
    assert int((~keep).sum()) == 6
    assert keep[0].all()  # frame 0 is protected
    assert keep[changed].all()  # every window the square entered or left survives
    assert changed[1:].any()  # (the clip really has motion)


def test_random_changes_with_the_seed_and_not_otherwise():
    batch = video_batch(tiny_config(), batch=2)

    def keep_for(seed: int, global_seed: int):
        tower = _tower("random", 0.5, seed=0)
        tower.reducer.cfg.seed = seed
        torch.manual_seed(global_seed)
        return _encode(tower, batch).diagnostics["keep"]

    assert torch.equal(keep_for(1, 0), keep_for(1, 123))
    assert not torch.equal(keep_for(1, 0), keep_for(2, 0))
    # a clip's draw does not depend on its batch neighbours
    tower = _tower("random", 0.5)
    alone = {k: v[1:] for k, v in batch.items()}
    assert torch.equal(
        _encode(tower, alone).diagnostics["keep"][0], _encode(tower, batch).diagnostics["keep"][1]
    )


def test_oracle_keeps_the_object_windows():
    tower = _tower("oracle", 0.5)
    batch = _with_objects(video_batch(tiny_config()))
    keep = _encode(tower, batch).diagnostics["keep"]
    assert keep[:, :, 1].all()  # pixels 0..8 × 16..24 lie in window 1 of every frame


def test_all_padded_clip_stays_finite_when_pruned():
    tower = _tower("scorer", 0.5)
    batch = video_batch(tiny_config())
    batch["frame_mask"][0] = False
    out = _encode(tower, batch, train=True)
    assert torch.isfinite(out.features).all() and not out.valid[0].any()
    assert torch.isfinite(out.aux_loss)


@pytest.mark.parametrize(
    ("sections", "needle"),
    [
        ({"pruning": {"method": "random", "ratio": 1.0}}, "pruning.ratio"),
        ({"pruning": {"method": "random", "ratio": -0.1}}, "pruning.ratio"),
        ({"pruning": {"method": "easy", "ratio": 0.5, "prune_at": 4}}, "pruning.prune_at"),
        ({"pruning": {"method": "scorer", "ratio": 0.5, "prune_at": 3}}, "pruning.prune_at"),
        (
            {"pruning": {"method": "scorer", "ratio": 0.5}, "connector": {"window": 3}},
            "connector.window",
        ),
        ({"pruning": {"method": "stts"}}, "pruning.method"),
        ({"pruning": {"method": "oracle", "ratio": 0.5}}, "data.ground_truth"),
        ({"pruning": {"method": "scorer", "ratio": 0.9}}, "keeps the first frame"),
    ],
)
def test_bad_pruning_config_is_refused_at_config_time(sections, needle):
    with pytest.raises((ConfigError, ValueError)) as err:
        tiny_config(**sections)
    assert needle in str(err.value)


def test_window_that_does_not_divide_the_grid_is_fine_for_random():
    cfg = tiny_config(pruning={"method": "random", "ratio": 0.5}, connector={"window": 3})
    assert cfg.tokens_per_frame == 4  # ceil(4/3)² ragged windows
    assert isinstance(cfg, ExperimentConfig)


def test_prune_bench_smoke_builds_every_preset_at_every_ratio():
    """benchmarks/prune_bench.py --smoke (nothing timed): every preset validates and builds at
    every ratio; the pinned geometry reproduces the analytic GFLOPs recorded in prune.md."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "prune_bench.py"
    run = subprocess.run(
        [sys.executable, str(script), "--smoke"], capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stderr
    rows = [ln.split(" | ") for ln in run.stdout.splitlines() if "× |" in ln]
    assert len(rows) == 12  # 3 presets × 4 ratios
    large = [r for r in rows if r[0].startswith("| large")]
    assert [r[3] for r in large] == ["102.26", "85.38", "72.25", "60.12"]


def test_a_one_patch_window_pools_to_its_value_exactly_as_full_attention_does():
    from core.layers.pooling import AttentionPool

    torch.manual_seed(0)
    pool = AttentionPool(32, 4, init_std=0.1)
    windows = torch.randn(10, 1, 32)
    valid = torch.ones(10, 1, dtype=torch.bool)
    assert torch.allclose(pool(windows, valid), pool.attend(windows, valid), atol=1e-6)
    assert AttentionPool.window_flops(10, 1, 32) == 10 * 4 * 32 * 32  # v and o only
