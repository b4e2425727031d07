"""The reducer zoo outside the ViT (pre- and post-ViT) and its shared contract with ToMe: budgets
for every arch, ratio and frame count, batch independence, padding, constructed clips with a known
answer per method, and the token flow the analytic FLOPs follow."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ablations.cells import training_free
from core import budget
from core.config import ConfigError
from core.efficiency.flops import analytic_flops
from core.extensions import display_metadata
from core.layers.windows import WindowGrid
from core.models.vision_tower import VisionTower
from core.models.vlm import VideoVLM
from core.pruning import build_reducer
from core.pruning.fastvid import dyseg
from core.pruning.pool import pooling_targets
from core.pruning.post_vit import PostViTInputs, frame_budgets
from core.pruning.tome import merge_schedule
from tests.helpers_model import tiny_config, video_batch

POST_VIT = ["pool", "visionzip", "divprune", "dycoke", "fastvid", "vidcom2", "framefusion"]
ZOO = [*POST_VIT, "fewer_frames", "tome"]
ARCHS = ["joint_decoder", "cross_attention", "mot", "moma"]
REFUSES_LOW_BUDGETS = {"dycoke", "tome"}  # keeps first frames whole / a window per frame
VOCAB = 20


def _encode(tower: VisionTower, batch: dict):
    tower.eval()
    return tower(batch["pixel_values"], batch["frame_mask"], sample_keys=batch["sample_key"])


def _tower(method: str, ratio: float, **sections) -> VisionTower:
    torch.manual_seed(0)
    pruning = {"method": method, "ratio": ratio, **sections.pop("pruning", {})}
    return VisionTower(tiny_config(pruning=pruning, **sections))


@pytest.mark.parametrize("method", ZOO)
@pytest.mark.parametrize("ratio", [0.3, 0.5, 0.7])
@pytest.mark.parametrize("frames", [2, 3, 4])
def test_kept_count_equals_the_budget_and_sizes_cover_the_clip(method, ratio, frames):
    sections = {"pruning": {"method": method, "ratio": ratio}, "data": {"max_frames": frames}}
    try:
        cfg = tiny_config(**sections)
    except ConfigError as err:  # a budget the method cannot meet is refused before any model
        assert method in REFUSES_LOW_BUDGETS and "pruning.ratio" in str(err)
        return
    torch.manual_seed(0)
    tower = VisionTower(cfg)
    batch = video_batch(cfg, batch=3)
    batch["frame_mask"][1, -1] = False
    out = _encode(tower, batch)
    expected = budget.kept_tokens(frames, 4, ratio)
    assert out.num_tokens == expected == cfg.kept_tokens()  # the batch's static slots
    assert torch.isfinite(out.features).all()
    own = budget.clip_kept_tokens([frames, frames - 1, frames], frames, 4, ratio)
    if method == "tome" and frames == 2:  # one real frame keeps what the batch schedule leaves it
        points = cfg.vision.depth - cfg.pruning.prune_at
        own[1] = min(own[1], 4 - sum(merge_schedule(4, frames, expected, points)[:-1]))
    assert out.diagnostics["keep"].flatten(1).sum(1).tolist() == own  # each clip's own budget
    assert out.valid.sum(1).tolist() == own and (own[1] < expected or frames == 2)
    if out.sizes is not None:  # merges: every token stands for ≥ 1 window, never more than exist
        assert (out.sizes >= 1).all() and (out.sizes.sum(1) <= frames * 4 + expected).all()
        real = out.sizes * out.valid  # the clip's tokens cover at most its real windows
        assert (real.sum(1) <= torch.tensor([frames, frames - 1, frames]) * 4).all()
    for clip, n in enumerate(own):  # its tokens in (frame, window) order, no repeats; filler last
        index = out.frame_index[clip, :n] * 4 + out.window_index[clip, :n]
        assert (index.diff() > 0).all() and out.valid[clip, :n].all()
        assert not out.valid[clip, n:].any() and (out.features[clip, n:] == 0).all()


@pytest.mark.parametrize("method", ZOO)
@pytest.mark.parametrize("arch", ARCHS)
def test_every_arch_receives_exactly_the_budget_and_trains_through_it(method, arch):
    torch.manual_seed(0)
    cfg = tiny_config(fusion={"arch": arch}, pruning={"method": method, "ratio": 0.5})
    model = VideoVLM(cfg, VOCAB)
    batch = video_batch(cfg, batch=2, vocab=VOCAB)
    batch["frame_mask"][1, -1] = False
    out = model(batch)
    assert out.visual.num_tokens == budget.kept_tokens(4, 4, 0.5) == 8
    assert out.logits.shape == (2, cfg.data.max_text_len, VOCAB)
    weight = model.vision.encoder.patch_embed.weight
    (grad,) = torch.autograd.grad(out.visual.features.square().sum(), weight, retain_graph=True)
    assert grad.abs().sum() > 0  # the kept tokens carry the ViT's gradient
    out.loss.backward()


@pytest.mark.parametrize("method", ZOO)
def test_a_clip_alone_equals_the_clip_in_a_batch_padded_frames_included(method):
    tower = _tower(method, 0.5)
    batch = video_batch(tiny_config(), batch=2, seed=3)
    batch["frame_mask"][1, 2:] = False
    together = _encode(tower, batch)
    for i in range(2):
        alone = _encode(tower, {k: v[i : i + 1] for k, v in batch.items()})
        torch.testing.assert_close(alone.features[0], together.features[i], atol=1e-5, rtol=1e-5)
        for name in ("frame_index", "window_index", "valid"):
            assert torch.equal(getattr(alone, name)[0], getattr(together, name)[i]), name
        if alone.sizes is not None:
            assert torch.equal(alone.sizes[0], together.sizes[i])


@pytest.mark.parametrize("method", ZOO)
def test_an_all_padded_clip_stays_finite_and_masked(method):
    tower = _tower(method, 0.5)
    batch = video_batch(tiny_config(), batch=2)
    batch["frame_mask"][0] = False
    out = _encode(tower, batch)
    assert torch.isfinite(out.features).all()
    assert not out.valid[0].any() and out.valid[1].all()


def test_padded_frames_take_budget_last():
    mask = torch.tensor([[True, True, False, False], [True, True, True, True]])
    assert frame_budgets(mask, 9, 4).tolist() == [[4, 4, 1, 0], [3, 2, 2, 2]]
    tower = _tower("divprune", 0.5)
    batch = video_batch(tiny_config(), batch=1)
    batch["frame_mask"][0, 2:] = False  # 8 real windows: the clip's own budget keeps 4
    out = _encode(tower, batch)
    assert out.valid.sum() == 4 and out.valid[0, :4].all() and (out.frame_index[0, :4] < 2).all()


@pytest.mark.parametrize("method", ZOO)
def test_display_metadata_names_the_stage_and_every_method_is_training_free(method):
    meta = display_metadata(tiny_config(pruning={"method": method, "ratio": 0.5}))["method"]
    stage = {"fewer_frames": "pre_vit", "tome": "in_vit"}.get(method, "post_vit")
    assert meta["stage"] == stage and meta["trained"] is False
    assert training_free(method)  # zero-shot on the base as well as fine-tuned from it


# ---- constructed inputs with a known answer ----------------------------------------------------
def _inputs(features: torch.Tensor, n_keep: int, grid: int = 2, **extra) -> PostViTInputs:
    b, f = features.shape[:2]
    mask = extra.pop("frame_mask", torch.ones(b, f, dtype=torch.bool))
    return PostViTInputs(
        features=features,
        frame_mask=mask,
        windows=WindowGrid(grid, 1),
        n_keep=n_keep,
        training=False,
        sample_keys=torch.arange(b),
        **extra,
    )


def _reducer(method: str, **options):
    cfg = tiny_config(
        pruning={"method": method, "ratio": 0.5, **({method: options} if options else {})}
    )
    return build_reducer(cfg.pruning)


def test_dycoke_drops_the_windows_that_repeat_their_reference_first():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 4, 8, generator=gen)  # frames 0 and 1 unrelated
    x[0, 2] = x[0, 0]
    x[0, 2, 1] = torch.randn(8, generator=gen)  # frame 2 repeats frame 0 (its reference) but 1
    x[0, 3] = x[0, 2]
    x[0, 3, 0] = -x[0, 2, 0]  # frame 3 repeats frame 2 (its reference) except window 0
    out = _reducer("dycoke").reduce(_inputs(x, 7))  # frame 0 whole, then 1 per frame
    keep = out.keep[0]
    assert keep[0].all() and keep.sum(-1).tolist() == [4, 1, 1, 1]
    assert keep[2, 1] and keep[3, 0]  # the changed windows survive
    torch.testing.assert_close(out.scores[0, 2, [0, 2, 3]], torch.ones(3))  # compared with frame 0
    # the per-frame count follows the budget (DyCoke's fixed rate), not the content
    assert _reducer("dycoke").reduce(_inputs(x, 15)).keep[0].sum(-1).tolist() == [4, 4, 4, 3]


def test_framefusion_merges_a_duplicate_frame_into_its_first_copy():
    torch.manual_seed(0)
    tower = _tower("framefusion", 0.25, pruning={"framefusion": {"threshold": 0.999}})
    batch = video_batch(tiny_config(), batch=1, seed=1)
    batch["pixel_values"][0, 1] = batch["pixel_values"][0, 0]  # frame 1 == frame 0
    out = _encode(tower, batch)  # 16 → 12 tokens: exactly frame 1's four merge
    keep = out.diagnostics["keep"][0]
    assert keep[0].all() and not keep[1].any() and keep[2:].all()
    assert out.sizes[0].tolist() == [2.0] * 4 + [1.0] * 8
    dense = _encode(_tower("none", 0.0), batch)  # same seed, same weights
    torch.testing.assert_close(out.features[0, :4], dense.features[0, :4], atol=1e-5, rtol=1e-5)


def test_framefusion_prunes_by_attention_when_too_few_tokens_repeat():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 2, 4, 8, generator=gen)
    x[0, 1, 3] = x[0, 0, 3]  # one repeat; the budget needs two tokens gone
    k = torch.zeros(1, 2, 1, 4, 2)
    k[..., 1, 0] = 10.0  # patch 1 of each frame gets nearly all the attention
    q = torch.ones(1, 2, 1, 4, 2)
    out = _reducer("framefusion").reduce(_inputs(x, 6, vit_q=q, vit_k=k))
    keep = out.keep[0]
    assert not keep[1, 3]  # merged into frame 0's window 3 (size 2)
    assert keep[:, 1].all()  # the attended windows survive the pruning
    assert out.sizes[0].sum() == 7  # 8 windows, one pruned outright


def test_fastvid_cuts_between_scenes_and_never_merges_across_them():
    assert dyseg([0.99, 0.2, 0.99], [True] * 4, segments=2, tau=0.1) == [0, 0, 1, 1]
    assert dyseg([0.99, 0.95, 0.5], [True] * 4, segments=1, tau=0.9) == [0, 0, 0, 1]
    assert dyseg([0.99, 0.99, 0.99], [True, True, False, False], 1, 0.9) == [0, 0, 1, 1]
    gen = torch.Generator().manual_seed(0)
    x = torch.zeros(1, 4, 4, 16)
    x[0, 0, :, :8] = torch.randn(4, 8, generator=gen)  # scene A lives in channels 0..7
    x[0, 1] = x[0, 0]
    x[0, 2, :, 8:] = torch.randn(4, 8, generator=gen)  # scene B in channels 8..15
    x[0, 3] = x[0, 2]
    q, k = torch.randn(1, 4, 2, 4, 3, generator=gen), torch.randn(1, 4, 2, 4, 3, generator=gen)
    out = _reducer("fastvid", segments=2).reduce(_inputs(x, 8, vit_q=q, vit_k=k))
    frames = out.frame_index[0]
    scene_a = out.features[0, frames < 2]
    scene_b = out.features[0, frames >= 2]
    assert scene_a[:, 8:].abs().max() == 0 and scene_b[:, :8].abs().max() == 0
    assert out.diagnostics["segments"] == 2
    assert out.sizes[0].sum() <= 16 and (out.sizes[0] > 1).any()  # some tokens were merged


def test_vidcom2_gives_the_unique_frame_more_tokens_and_keeps_outliers():
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(4, 16, generator=gen)
    x = base.expand(1, 4, 4, 16).clone()
    x[0, 3] = torch.randn(4, 16, generator=gen) * 3  # one frame unlike the others
    out = _reducer("vidcom2").reduce(_inputs(x, 8))
    per_frame = out.keep[0].sum(-1).tolist()
    assert sum(per_frame) == 8 and per_frame[3] == max(per_frame) > 2


def test_divprune_never_keeps_a_copy_while_a_new_token_remains():
    gen = torch.Generator().manual_seed(0)
    frame = torch.randn(4, 8, generator=gen)
    x = frame.expand(1, 4, 4, 8).clone()  # four copies of one frame
    out = _reducer("divprune").reduce(_inputs(x, 4))
    kept = out.features[0]
    assert torch.linalg.matrix_rank(kept) == 4  # one copy of each distinct token
    assert sorted(out.window_index[0].tolist()) == [0, 1, 2, 3]


def test_visionzip_keeps_the_most_attended_and_adds_the_mean_of_joined_tokens():
    """One frame by the rule written out: dominant = top attention, targets = every step-th
    leftover, every other leftover joins its most similar target, contextual = target + mean."""
    gen = torch.Generator().manual_seed(0)
    f, grid, d = 2, 4, 6
    x = torch.randn(1, f, grid * grid, d, generator=gen)
    q = torch.randn(1, f, 2, grid * grid, 4, generator=gen)
    k = torch.randn(1, f, 2, grid * grid, 4, generator=gen)
    reducer = _reducer("visionzip", contextual_fraction=0.25)
    out = reducer.reduce(_inputs(x, 16, grid=grid, vit_q=q, vit_k=k))
    for t in range(f):
        logits = q[0, t] @ k[0, t].transpose(-1, -2) / 2.0
        attention = logits.softmax(-1).mean((0, 1))  # (N,) received
        dominant = attention.topk(6).indices.tolist()
        left = [i for i in range(16) if i not in dominant]
        targets = left[:: len(left) // 2][:2]
        keys = F.normalize(k[0, t].mean(0), dim=-1)
        joined = {j: [] for j in targets}
        for i in left:
            if i not in targets:
                joined[max(targets, key=lambda j: float(keys[i] @ keys[j]))].append(i)
        expected = {i: x[0, t, i] for i in dominant}
        for j in targets:
            members = joined[j]
            mean = x[0, t, members].mean(0) if members else torch.zeros(d)
            expected[j] = x[0, t, j] + mean
        rows = out.frame_index[0] == t
        got = dict(zip(out.window_index[0, rows].tolist(), out.features[0, rows], strict=True))
        assert sorted(got) == sorted(expected)
        for i, value in expected.items():
            torch.testing.assert_close(got[i], value, atol=1e-5, rtol=1e-5)


def test_pool_is_an_adaptive_average_pool_for_square_budgets():
    assert pooling_targets(4, 4) == (0, 0, 2, 2, 0, 0, 2, 2, 8, 8, 10, 10, 8, 8, 10, 10)
    odd = pooling_targets(3, 5)  # 5 rectangles of a 3×3 grid, sizes 1 or 2 only
    sizes = [odd.count(t) for t in sorted(set(odd))]
    assert len(sizes) == 5 and set(sizes) <= {1, 2} and sum(sizes) == 9
    assert pooling_targets(3, 9) == tuple(range(9))
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 16, 5, generator=gen)
    out = _reducer("pool").reduce(_inputs(x, 12, grid=4))  # 4 per frame: 2×2 pooling
    grid = x.view(2, 3, 4, 4, 5).permute(0, 1, 4, 2, 3).flatten(0, 1)
    pooled = F.avg_pool2d(grid, 2).flatten(2).transpose(1, 2).reshape(2, 12, 5)
    torch.testing.assert_close(out.features, pooled)
    assert (out.sizes == 4).all()


def test_fewer_frames_encodes_only_uniform_frames_and_matches_their_dense_tokens():
    cfg = tiny_config(data={"max_frames": 8}, pruning={"method": "fewer_frames", "ratio": 0.5})
    torch.manual_seed(0)
    tower = VisionTower(cfg)
    seen = []
    tower.encoder.patch_embed.register_forward_hook(lambda m, a, o: seen.append(a[0].shape[0]))
    batch = video_batch(cfg, batch=2)
    out = _encode(tower, batch)
    assert seen == [2 * 4]  # 4 frames of each clip reach the ViT, not 8
    assert out.frame_index[0].unique().tolist() == [1, 3, 5, 7]
    torch.manual_seed(0)
    dense = _encode(VisionTower(tiny_config(data={"max_frames": 8})), batch)
    picked = (out.frame_index * 4 + out.window_index)[0]
    torch.testing.assert_close(out.features[0], dense.features[0, picked])
    # a budget that is not whole frames: the last chosen frame keeps evenly spaced windows
    short = _tower("fewer_frames", 0.7)  # 4 frames, K = 5: frames 1 and 3, one window of 3
    keep = _encode(short, video_batch(tiny_config(), batch=1)).diagnostics["keep"][0]
    assert keep.sum(-1).tolist() == [0, 4, 0, 1] and keep[3, 2]


def test_the_token_flow_counts_what_runs_at_each_stage():
    full = analytic_flops(tiny_config())
    rnd = analytic_flops(tiny_config(pruning={"method": "random", "ratio": 0.5}))
    post = analytic_flops(tiny_config(pruning={"method": "divprune", "ratio": 0.5}))
    assert post.vit == full.vit and post.connector == full.connector  # everything runs before it
    assert post.llm == rnd.llm and post.vision_tokens_llm == rnd.vision_tokens_llm == 8
    assert post.reducer > 0
    pre = analytic_flops(
        tiny_config(data={"max_frames": 8}, pruning={"method": "fewer_frames", "ratio": 0.5})
    )
    unpruned = analytic_flops(tiny_config(data={"max_frames": 8}))
    assert pre.vit == pytest.approx(unpruned.vit / 2)  # half the frames through the ViT
    assert pre.vit_tokens_per_block == [4 * 16] * 4 and pre.vision_tokens_llm == 16
    with pytest.raises(ValueError, match="kept_per_frame"):
        analytic_flops(tiny_config(pruning={"method": "pool", "ratio": 0.5}), kept_per_frame=[1])


@pytest.mark.parametrize(
    ("sections", "needle"),
    [
        ({"pruning": {"method": "dycoke", "ratio": 0.9}}, "keeps the first frame of every group"),
        ({"pruning": {"method": "dycoke", "dycoke": {"group": 1}}}, "pruning.dycoke.group"),
        (
            {"pruning": {"method": "visionzip", "visionzip": {"contextual_fraction": 1.0}}},
            "pruning.visionzip.contextual_fraction",
        ),
        ({"pruning": {"method": "fastvid", "fastvid": {"knn": 0}}}, "pruning.fastvid.knn"),
        ({"pruning": {"method": "vidcom2", "vidcom2": {"temperature": 0}}}, "temperature"),
        ({"pruning": {"method": "framefusion", "framefusion": {"threshold": 2}}}, "threshold"),
    ],
)
def test_bad_zoo_settings_are_refused_at_config_time(sections, needle):
    with pytest.raises(ConfigError) as err:
        tiny_config(**sections)
    assert needle in str(err.value)
