"""Each clip's budget from its own real frames, in batches of static shape: every registered
reducer at every stage keeps exactly kept_tokens(r) valid tokens of a clip with r real frames
(filler after them), a clip's tokens do not depend on its batch, padding a clip changes nothing a
deterministic reducer keeps, and the packed ViT blocks run on the clips' own budgets only."""

from __future__ import annotations

import pytest
import torch

from core import budget
from core.models.clip_slots import budget_groups, merge_diagnostics, slot_positions, to_slots
from core.models.vision_tower import VisionTower
from core.models.vlm import VideoVLM
from core.pruning import Stage
from core.registry import REDUCERS
from tests.helpers_model import tiny_config, video_batch

VOCAB = 20
FRAMES = 4  # tiny_config: 4 tokens per frame
REAL = [4, 2, 3, 0]  # a full clip, a short one, one with a frame lost mid-clip, an undecodable one
VISION_SIDE = [
    m
    for m in REDUCERS.names()
    if REDUCERS.get(m).stage is not Stage.IN_LLM and not REDUCERS.get(m).is_reference
]
IN_LLM = [m for m in REDUCERS.names() if REDUCERS.get(m).stage is Stage.IN_LLM]
ARCHS = ["joint_decoder", "cross_attention", "mot", "moma"]


def _config(method: str, frames: int = FRAMES, **sections):
    return tiny_config(
        data={"max_frames": frames, "ground_truth": method == "oracle"},
        pruning={"method": method, "ratio": 0.5},
        lm={"n_layers": 4},
        **sections,
    )


def _batch(cfg, real: list[int] = REAL, seed: int = 0) -> dict:
    batch = video_batch(cfg, batch=len(real), seed=seed, vocab=VOCAB)
    f = cfg.data.max_frames
    mask = torch.zeros(len(real), f, dtype=torch.bool)
    for i, r in enumerate(real):
        mask[i, :r] = True
    if len(real) > 2 and real[2] == 3:  # clip 2: frames 0, 2, 3 decoded, frame 1 lost
        mask[2] = torch.tensor([True, False, True, True])
    batch["frame_mask"] = mask
    b, _, _, s, _ = batch["pixel_values"].shape
    om = torch.zeros(b, f, s, s, dtype=torch.bool)
    om[:, :, 0:8, 16:24] = True  # the oracle's ground truth: one object in window 1
    batch["object_mask"] = om
    return batch


def _encode(tower: VisionTower, batch: dict):
    return tower(
        batch["pixel_values"],
        batch["frame_mask"],
        sample_keys=batch["sample_key"],
        object_mask=batch["object_mask"],
    )


def _own(real: list[int], frames: int = FRAMES) -> list[int]:
    return budget.clip_kept_tokens(real, frames, 4, 0.5)


def test_clip_budgets_by_hand():
    # 4 tokens per frame, half pruned: r real frames keep 4r − 2r; none → the padded budget
    assert budget.clip_kept_tokens([4, 2, 3, 0, 1], 4, 4, 0.5) == [8, 4, 6, 8, 4]
    # a one-frame clip would be an image (4 kept) but the batch holds only 8 − ⌊5.6⌋ = 3 slots
    assert budget.clip_kept_tokens([1, 2], 2, 4, 0.7) == [3, 3]
    with pytest.raises(ValueError, match="5 real frames"):
        budget.clip_kept_tokens([5], 4, 4, 0.5)


def test_slots_fill_each_clip_from_the_front_whatever_the_token_order():
    clip = torch.tensor([2, 0, 0, 2, 1])  # tokens of clips 0..2 interleaved
    values = torch.tensor([20.0, 1.0, 2.0, 21.0, 10.0])
    out = to_slots(values, slot_positions(clip, 3, 3), 3, 3, -1.0)
    assert out.tolist() == [[1.0, 2.0, -1.0], [10.0, -1.0, -1.0], [20.0, 21.0, -1.0]]
    with pytest.raises(RuntimeError, match="3 tokens, its batch has 2 slots"):
        slot_positions(torch.tensor([0, 0, 0]), 1, 2)


def test_clips_of_one_length_share_a_group_and_an_undecodable_clip_counts_as_full():
    mask = _batch(_config("random"))["frame_mask"]
    groups = budget_groups(mask, 4, 0.5)
    assert [(g.index.tolist(), g.n_keep) for g in groups] == [([0, 3], 8), ([2], 6), ([1], 4)]


@pytest.mark.parametrize("method", VISION_SIDE)
def test_every_vision_side_reducer_keeps_each_clips_own_budget(method):
    torch.manual_seed(0)
    cfg = _config(method)
    out = _encode(VisionTower(cfg).eval(), _batch(cfg))
    own = _own(REAL)  # [8, 4, 6, 8]; before per-clip budgets the short clips kept 8 valid too
    assert out.num_tokens == cfg.kept_tokens() == 8  # one static shape for the batch
    assert out.valid.sum(1).tolist() == [8, 4, 6, 0]  # the undecodable clip: all masked
    assert out.diagnostics["keep"].flatten(1).sum(1).tolist()[:3] == own[:3]
    assert out.real_frames.tolist() == REAL
    for clip, n in enumerate(own[:3]):
        frames = out.frame_index[clip, :n]
        assert _batch(cfg)["frame_mask"][clip, frames].all()  # only real frames' tokens
        assert not out.valid[clip, n:].any() and (out.features[clip, n:] == 0).all()
    assert torch.isfinite(out.features).all()


@pytest.mark.parametrize("method", VISION_SIDE)
def test_a_clips_tokens_do_not_depend_on_the_rest_of_its_batch(method):
    torch.manual_seed(0)
    cfg = _config(method)
    tower = VisionTower(cfg).eval()
    batch = _batch(cfg)
    with torch.no_grad():
        both = _encode(tower, batch)
        for i, n in enumerate(_own(REAL)[:3]):
            alone = _encode(tower, {k: v[i : i + 1] for k, v in batch.items()})
            assert alone.valid[0].sum() == n
            assert torch.allclose(both.features[i, :n], alone.features[0, :n], atol=1e-5)
            assert torch.equal(both.frame_index[i, :n], alone.frame_index[0, :n])
            assert torch.equal(both.window_index[i, :n], alone.window_index[0, :n])


# Reducers whose decision reads only the clip's real frames: padding the clip to more frames must
# not change what it keeps. (`random`, and the reducers that break ties or sample with keys drawn
# over all F·P′ positions, draw different keys for a different F.)
PADDING_INVARIANT = ["heuristic", "scorer", "oracle", "pool", "fewer_frames", "divprune",
                     "dycoke", "fastvid", "vidcom2", "visionzip", "tome", "easy"]  # fmt: skip


@pytest.mark.parametrize("method", PADDING_INVARIANT)
def test_padding_a_clip_changes_nothing_it_keeps(method):
    torch.manual_seed(0)
    padded_cfg, short_cfg = _config(method, 4), _config(method, 2)
    tower = VisionTower(padded_cfg).eval()
    short = VisionTower(short_cfg).eval()
    weights = tower.state_dict()
    weights["frame_embedding"] = weights["frame_embedding"][:2]
    short.load_state_dict(weights)
    batch = _batch(padded_cfg, [2])  # 2 real frames, 2 padded
    cut = {k: v[:, :2] if k in ("pixel_values", "frame_mask", "object_mask") else v
           for k, v in batch.items()}  # fmt: skip
    with torch.no_grad():
        a, b = _encode(tower, batch), _encode(short, cut)
    n = _own([2], 2)[0]
    assert a.valid.sum() == b.valid.sum() == n == 4
    assert torch.equal(a.frame_index[0, :n], b.frame_index[0, :n])
    assert torch.equal(a.window_index[0, :n], b.window_index[0, :n])
    assert torch.allclose(a.features[0, :n], b.features[0, :n], atol=1e-5)


def test_the_padded_budget_would_keep_more_of_a_short_clip():
    """Negative control for the invariance above: the same short clip handed the padded batch's
    budget (kept_tokens(4) = 8 of its 8 real windows) keeps everything, not its own 4."""
    cfg = _config("heuristic", 4)
    tower = VisionTower(cfg).eval()
    batch = _batch(cfg, [2])
    sel = tower.reducer.select  # the reducer asked with the padded budget
    seen = []
    tower.reducer.select = lambda inputs: seen.append(inputs.n_prune) or sel(inputs)
    _encode(tower, batch)
    assert seen == [16 - 4]  # its own budget: 4 kept; the padded one would prune 16 − 8


@pytest.mark.parametrize("method", ["scorer", "random"])
def test_the_packed_vit_blocks_run_on_the_clips_own_budgets_only(method):
    torch.manual_seed(0)
    cfg = _config(method)
    tower = VisionTower(cfg).eval()
    rows = []
    last = tower.encoder.blocks[-1]
    packed = last.forward_packed
    last.forward_packed = lambda x, plan: rows.append(x.shape[0]) or packed(x, plan)
    _encode(tower, _batch(cfg))
    # patches through the last block: the kept windows (8 + 4 + 6 + 8) × w² = 26 × 4, not 4 × 8 × 4
    assert rows == [sum(_own(REAL)) * 4]


def test_a_short_clip_trains_the_scorer_with_a_finite_aux_loss_and_gradients():
    torch.manual_seed(0)
    cfg = _config("scorer")
    model = VideoVLM(cfg, VOCAB).train()
    out = model(_batch(cfg))
    assert torch.isfinite(out.loss) and out.visual.aux_loss is not None
    out.loss.backward()
    grads = [p.grad for p in model.vision.reducer.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("method", IN_LLM)
def test_in_llm_drops_leave_each_clip_its_own_budget(arch, method):
    torch.manual_seed(0)
    cfg = _config(method, fusion={"arch": arch})
    model = VideoVLM(cfg, VOCAB).eval()
    with torch.no_grad():
        out = model(_batch(cfg))
    kept, valid = out.visual.diagnostics["llm_kept"], out.visual.diagnostics["llm_kept_valid"]
    assert kept.shape == (4, 8)  # the batch plan's shape: 8 of 16
    assert valid.sum(1).tolist() == [8, 4, 6, 0]
    assert torch.isfinite(out.logits).all()


@pytest.mark.parametrize("method", IN_LLM)
def test_in_llm_a_short_clip_keeps_its_most_attended_tokens(method):
    """Its valid survivors are the top of the probe's ranking among its real tokens: alone in a
    batch padded to 4 frames it keeps the same tokens valid as in the mixed batch."""
    torch.manual_seed(0)
    cfg = _config(method)
    model = VideoVLM(cfg, VOCAB).eval()
    batch = _batch(cfg)
    with torch.no_grad():
        both = model(batch)
        alone = model({k: v[1:2] for k, v in batch.items()})
    pick = both.visual.diagnostics["llm_kept"][1][both.visual.diagnostics["llm_kept_valid"][1]]
    own = alone.visual.diagnostics["llm_kept"][0][alone.visual.diagnostics["llm_kept_valid"][0]]
    assert pick.numel() == 4 and torch.equal(pick, own) and (pick < 8).all()
    assert torch.allclose(both.logits[1], alone.logits[0], atol=1e-5)


def test_group_diagnostics_merge_into_the_batchs_or_refuse():
    mask = _batch(_config("random"))["frame_mask"]
    groups = budget_groups(mask, 4, 0.5)  # clips [0, 3], [2], [1]
    parts = [
        {"share": 0.5, "per_clip": torch.tensor([1.0, 4.0])},
        {"share": 1.0, "per_clip": torch.tensor([3.0])},
        {"share": 0.0, "per_clip": torch.tensor([2.0])},
    ]
    merged = merge_diagnostics(parts, groups, 4)
    assert merged["share"] == pytest.approx((0.5 * 2 + 1.0) / 4)  # a mean over the four clips
    assert merged["per_clip"].tolist() == [1.0, 2.0, 3.0, 4.0]  # back in batch order
    with pytest.raises(TypeError, match="'pooled'"):
        merge_diagnostics([{"pooled": torch.ones(7)}, {}, {}], groups, 4)


def test_the_scorers_aux_loss_is_the_mean_over_all_its_terms_whatever_the_grouping():
    """A one-frame clip has no frame pair: the batch's aux loss must be the full clip's, not
    halved by averaging the groups per clip."""
    torch.manual_seed(0)
    cfg = _config("scorer")
    tower = VisionTower(cfg).train()
    batch = _batch(cfg, [4, 1])
    mixed = _encode(tower, batch).aux_loss
    alone = _encode(tower, {k: v[:1] for k, v in batch.items()}).aux_loss
    assert torch.allclose(mixed, alone, atol=1e-6) and mixed > 0


def test_tome_makes_one_vit_pass_and_an_undecodable_clip_is_kept_as_alone():
    """One pass per forward (a sharded ViT all-gathers each block once per call, on every
    rank); a clip with no real frame keeps its padded budget whatever its batch."""
    torch.manual_seed(0)
    cfg = _config("tome")
    tower = VisionTower(cfg).eval()
    calls = []
    tower.encoder.blocks[0].register_forward_hook(lambda *a: calls.append(1))
    batch = _batch(cfg)  # four clip lengths
    out = _encode(tower, batch)
    assert len(calls) == 1
    alone = _encode(tower, {k: v[3:4] for k, v in batch.items()})
    assert out.diagnostics["keep"][3].sum() == alone.diagnostics["keep"][0].sum() == 8


def test_uniform_batches_need_no_slot_mapping_and_run_on_the_meta_device():
    cfg = _config("none")
    tower = VisionTower(cfg).to("meta")
    b = _batch(cfg, [4, 4])
    out = tower(b["pixel_values"].to("meta"), b["frame_mask"].to("meta"))
    assert out.features.shape == (2, 16, cfg.lm.dim) and out.features.device.type == "meta"
