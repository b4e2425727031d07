"""ToMe in the ViT: bipartite soft matching of windows, size-weighted merging, proportional
attention, its schedule, and the token counts its analytic FLOPs follow."""

from __future__ import annotations

import math

import pytest
import torch

from core.config import ConfigError
from core.efficiency.flops import analytic_flops
from core.models.vision.vit import ViTAttention
from core.models.vision_tower import VisionTower
from core.pruning import build_reducer
from core.pruning.tome import frame_targets, merge_schedule
from tests.helpers_model import tiny_config, video_batch


def _tome(**options):
    cfg = tiny_config(pruning={"method": "tome", "ratio": 0.5, "tome": options})
    return build_reducer(cfg.pruning)


def test_matching_merges_identical_tokens_first_with_a_size_weighted_average():
    gen = torch.Generator().manual_seed(0)
    metric = torch.randn(1, 6, 8, generator=gen)
    metric[0, 2] = metric[0, 5]  # A token 2 (even position) equals B token 5 (odd, B index 2)
    x = torch.randn(1, 6, 1, 3, generator=gen)
    size = torch.tensor([[1.0, 1.0, 3.0, 1.0, 1.0, 2.0]])
    rep = torch.arange(6)[None]
    tome = _tome()
    best, dst = tome.match(metric)
    assert int(best.argmax()) == 1 and int(dst[0, 1]) == 2 and best[0, 1] == pytest.approx(1.0)
    out, new_size, new_rep, alive = tome.merge(x, size, rep, metric, torch.tensor([1]))
    assert new_rep[0].tolist() == [0, 4, 1, 3, 5] and alive.all()  # [unmerged A | B]
    assert new_size[0].tolist() == [1.0, 1.0, 1.0, 1.0, 5.0]
    torch.testing.assert_close(out[0, 4], (3 * x[0, 2] + 2 * x[0, 5]) / 5)  # weighted by size
    torch.testing.assert_close(out[0, :2], x[0, [0, 4]])  # the rest untouched


def test_a_frame_merging_more_at_the_last_point_marks_its_spare_slot_dead():
    gen = torch.Generator().manual_seed(0)
    metric, x = torch.randn(2, 4, 8, generator=gen), torch.randn(2, 4, 1, 3, generator=gen)
    size, rep = torch.ones(2, 4), torch.arange(4).expand(2, 4)
    _, new_size, _, alive = _tome().merge(x, size, rep, metric, torch.tensor([1, 2]))
    assert alive.sum(1).tolist() == [3, 2]
    assert new_size[alive].sum() == 8  # every window still represented once


def test_proportional_attention_equals_attending_to_the_merged_copies():
    """log(size) on a merged key's logit makes it count as `size` identical keys (ToMe §3)."""
    torch.manual_seed(0)
    attn = ViTAttention(8, 2)
    a, b, c = torch.randn(3, 8)
    copies = torch.stack([a, a, a, b, c])[None]
    merged = torch.stack([a, b, c])[None]
    bias = torch.tensor([[math.log(3.0), 0.0, 0.0]])
    with torch.no_grad():
        want = attn(copies)[0, 3:]  # queries b, c see three copies of a
        got = attn(merged, bias)[0, 1:]
        plain = attn(merged)[0, 1:]
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)
    assert not torch.allclose(plain, want, atol=1e-4)


def test_the_schedule_is_near_constant_capped_at_half_and_refused_when_infeasible():
    assert frame_targets(4, 5) == [2, 1, 1, 1]
    assert merge_schedule(16, 8, 32, 6) == [2, 2, 2, 2, 2, 2]  # tiny preset at 25% kept
    assert merge_schedule(4, 4, 5, 3) == [1, 1, 0]  # the 1-window frames merge 1 more at the end
    assert merge_schedule(16, 1, 2, 3) == [8, 4, 2]  # front-loaded where later ones cannot catch up
    with pytest.raises(ValueError, match="at most half"):
        merge_schedule(16, 1, 1, 3)  # 16 → 8 → 4 → 2 at best
    with pytest.raises(ConfigError, match=r"pruning.ratio=0.9: ToMe cannot merge 16 .* 2 merge"):
        tiny_config(
            data={"frame_size": 64}, pruning={"method": "tome", "ratio": 0.9, "prune_at": 2}
        )


def test_identical_windows_merge_first_in_the_vit_and_the_flow_matches_the_blocks():
    cfg = tiny_config(pruning={"method": "tome", "ratio": 0.25})  # 1 merge per frame, prune_at 1
    torch.manual_seed(0)
    tower = VisionTower(cfg)
    with torch.no_grad():
        tower.encoder.pos_embed.zero_()  # equal pixels → equal tokens
    batch = video_batch(cfg, batch=2)
    pixels = batch["pixel_values"]
    pixels[..., 0:16, 16:32] = pixels[..., 0:16, 0:16]  # window 1 copies window 0 in every frame
    seen = []
    for block in tower.encoder.blocks:
        block.attn.qkv.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[1]))
    tower.eval()
    out = tower(pixels, batch["frame_mask"], sample_keys=batch["sample_key"])
    keep = out.diagnostics["keep"]
    assert not keep[:, :, 0].any() and keep[:, :, 1:].all()  # window 0 folded into window 1
    assert (out.sizes.view(2, 4, 3)[..., 0] == 2).all()
    flow = analytic_flops(cfg)
    assert seen == [n // 4 for n in flow.vit_tokens_per_block]  # patches per frame and block
    assert seen == [16, 16, 12, 12]


def test_proportional_attention_can_be_switched_off():
    batch = video_batch(tiny_config(), batch=1)
    outs = []
    for prop in (True, False):
        torch.manual_seed(0)
        cfg = tiny_config(pruning={"method": "tome", "ratio": 0.5, "tome": {"prop_attn": prop}})
        tower = VisionTower(cfg).eval()
        outs.append(tower(batch["pixel_values"], batch["frame_mask"]).features)
    assert not torch.allclose(outs[0], outs[1])


def test_a_merge_point_may_fold_every_a_token():
    """4 windows → 2 in one merge (ratio 0.75 here): no A token stays; the B ones survive."""
    torch.manual_seed(0)
    cfg = tiny_config(data={"max_frames": 4}, pruning={"method": "tome", "ratio": 0.75})
    tower = VisionTower(cfg).eval()
    batch = video_batch(cfg, batch=2)
    batch["frame_mask"][1, 2:] = False
    with torch.no_grad():
        out = tower(batch["pixel_values"], batch["frame_mask"])
    assert out.valid.sum(1).tolist() == [4, 2] and torch.isfinite(out.features).all()
