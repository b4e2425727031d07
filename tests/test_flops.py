"""Analytic FLOPs against hand-computed numbers for a tiny config, plus invariants."""

from __future__ import annotations

import pytest

from core.config import ExperimentConfig
from core.efficiency.flops import analytic_flops

G = 1e9


def tiny(**sections) -> ExperimentConfig:
    """F=2 frames of 16 px, patch 8 → grid 2, N=4; D=8, M=16, 3 blocks; window 1 → P′=4;
    LM d=16, 1 layer, 2 heads (d_h=8), 1 kv head, SwiGLU m=32; T=4; vocab 1000 (default)."""
    base = {
        "data": {"frame_size": 16, "max_frames": 2, "min_frames": 1, "max_text_len": 4},
        "vision": {"patch_size": 8, "dim": 8, "depth": 3, "heads": 2, "mlp_ratio": 2.0},
        "connector": {"type": "avgpool", "window": 1},
        "lm": {"dim": 16, "n_layers": 1, "n_heads": 2, "n_kv_heads": 1, "ffn_dim": 32,
               "max_seq_len": 64},
    }  # fmt: skip
    for name, values in sections.items():
        base[name] = {**base.get(name, {}), **values}
    return ExperimentConfig.from_dict(base)


# Hand-computed parts of the tiny config (FLOPs).
PATCH_EMBED = 2 * 2 * 4 * (3 * 8 * 8) * 8  # F · 2 · N · 3p² · D = 24576
BLOCK_FRAME_4 = 8 * 4 * 64 + 4 * 16 * 8 + 4 * 4 * 8 * 16  # n=4: 2048 + 512 + 2048 = 4608
BLOCK_FRAME_2 = 8 * 2 * 64 + 4 * 4 * 8 + 4 * 2 * 8 * 16  # n=2: 1024 + 128 + 1024 = 2176
FULL_BLOCK = 2 * BLOCK_FRAME_4  # 9216
KEPT_BLOCK = 2 * BLOCK_FRAME_2  # 4 kept patches spread 2 + 2: 4352
LM_HEAD = 2 * 4 * 16 * 1000  # 2TdV = 128000


def jd_layer(s: int) -> int:
    return 4 * s * 256 + 4 * s * 16 * 8 + 4 * s * s * 16 + 6 * s * 16 * 32


def test_unpruned_joint_decoder_by_hand():
    fl = analytic_flops(tiny())
    assert fl.vision_tokens_full == 8 and fl.vision_tokens_llm == 8
    assert fl.patch_embed * G == pytest.approx(PATCH_EMBED)
    assert [b * G for b in fl.vit_blocks] == pytest.approx([FULL_BLOCK] * 3)
    assert fl.vit * G == pytest.approx(24576 + 3 * 9216)
    assert fl.reducer == 0
    assert fl.connector * G == pytest.approx(8 * 2 * 8 * 16)  # K · 2Dd = 2048
    # S = 8 + 4 = 12: q,o 12288 + k,v 6144 + attention 9216 + SwiGLU 36864 + LM head 128000
    assert jd_layer(12) == 64512
    assert fl.llm * G == pytest.approx(64512 + LM_HEAD)
    assert fl.total * G == pytest.approx(52224 + 2048 + 192512)
    assert fl.to_dict()["total"] == fl.total


def test_stts_blocks_scorer_and_layer_offset_vs_easy_by_hand():
    stts = analytic_flops(tiny(pruning={"method": "scorer", "ratio": 0.5, "prune_at": 0}))
    easy = analytic_flops(tiny(pruning={"method": "easy", "ratio": 0.5, "prune_at": 0}))
    # kept = 8 − floor(4 · 0.5 · 2) = 4 windows = 4 patches (w = 1)
    assert stts.vision_tokens_llm == easy.vision_tokens_llm == 4
    # STTS: blocks 0..prune_at+1 see every patch; easy: blocks 0..prune_at
    assert [b * G for b in stts.vit_blocks] == pytest.approx([FULL_BLOCK, FULL_BLOCK, KEPT_BLOCK])
    assert [b * G for b in easy.vit_blocks] == pytest.approx([FULL_BLOCK, KEPT_BLOCK, KEPT_BLOCK])
    assert stts.vit_tokens_per_block == [8, 8, 4] and easy.vit_tokens_per_block == [8, 4, 4]
    # scorer per frame: q 512 + k,v 1024 + attention 128 + o 512 + MLP 2·4·(256 + 256 + 16) = 4224
    assert stts.reducer * G == pytest.approx(2 * (512 + 1024 + 128 + 512 + 4224))
    # easy: one cosine pass 2 · P′ · w² · D per frame
    assert easy.reducer * G == pytest.approx(2 * 2 * 4 * 1 * 8)
    assert stts.connector * G == pytest.approx(4 * 256)
    assert stts.llm * G == pytest.approx(jd_layer(8) + LM_HEAD)


def test_random_scoring_is_free_and_kept_per_frame_sets_attention_term():
    rnd = analytic_flops(tiny(pruning={"method": "random", "ratio": 0.5, "prune_at": 0}))
    assert rnd.reducer == 0
    uneven = analytic_flops(
        tiny(pruning={"method": "random", "ratio": 0.5, "prune_at": 0}), kept_per_frame=[4, 0]
    )
    # later blocks: one frame of 4 patches (4608) instead of 2 + 2 (4352): Σ n_f² changes only
    assert uneven.vit_blocks[1] * G == pytest.approx(BLOCK_FRAME_4)
    assert (uneven.vit_blocks[1] - rnd.vit_blocks[1]) * G == pytest.approx(4 * (16 - 8) * 8)
    assert uneven.llm == rnd.llm and uneven.connector == rnd.connector
    with pytest.raises(ValueError, match="kept_per_frame"):
        analytic_flops(tiny(pruning={"method": "random", "ratio": 0.5}), kept_per_frame=[4, 1])
    with pytest.raises(ValueError, match="nothing is pruned"):
        analytic_flops(tiny(), kept_per_frame=[4, 4])


def test_attentional_pool_connector_by_hand():
    fl = analytic_flops(
        tiny(connector={"type": "attentional_pool", "window": 1, "attentional_pool": {"heads": 2}})
    )
    per_token = 2 * 64 + 4 * 1 * 64 + 4 * 1 * 8 + 2 * 64 + 2 * 8 * 16  # 800
    assert fl.connector * G == pytest.approx(8 * per_token)


def test_cross_attention_sequence_excludes_visual_tokens_by_hand():
    fl = analytic_flops(tiny(fusion={"arch": "cross_attention", "cross_attention": {"every": 1}}))
    text_layer = jd_layer(4)  # S = T = 4: 4096 + 2048 + 1024 + 12288
    assert text_layer == 19456
    xattn = 4 * 4 * 256 + 4 * 8 * 16 * 8 + 4 * 4 * 8 * 16 + 6 * 4 * 16 * 32  # K = 8 in K/V only
    assert fl.llm * G == pytest.approx(text_layer + xattn + LM_HEAD)
    # negative control: joint decoder puts the 8 visual tokens in the residual stream
    assert analytic_flops(tiny()).llm * G == pytest.approx(jd_layer(12) + LM_HEAD)


def test_cross_attention_every_counts_blocks():
    cfg = tiny(
        lm={"n_layers": 4}, fusion={"arch": "cross_attention", "cross_attention": {"every": 2}}
    )
    one = tiny(
        lm={"n_layers": 4}, fusion={"arch": "cross_attention", "cross_attention": {"every": 4}}
    )
    xattn = 4 * 4 * 256 + 4 * 8 * 16 * 8 + 4 * 4 * 8 * 16 + 6 * 4 * 16 * 32
    diff = analytic_flops(cfg).llm - analytic_flops(one).llm
    assert diff * G == pytest.approx(xattn)  # 2 blocks vs 1


def test_moma_expert_choice_by_hand_and_mot_equals_joint_decoder():
    moma = analytic_flops(
        tiny(fusion={"arch": "moma", "moma": {"image_experts": 2, "text_experts": 2}})
    )
    attention = 4 * 12 * 256 + 4 * 12 * 16 * 8 + 4 * 144 * 16  # shared attention, S = 12
    image = 2 * 6 * 4 * 16 * 32 + 2 * 8 * 16 * 2  # 2 experts × ceil(8/2) tokens + router
    text = 2 * 6 * 2 * 16 * 32 + 2 * 4 * 16 * 2  # 2 experts × ceil(4/2) tokens + router
    assert moma.llm * G == pytest.approx(attention + image + text + LM_HEAD)
    capped = analytic_flops(
        tiny(fusion={"arch": "moma", "moma": {"image_experts": 2, "text_experts": 2,
                                               "capacity": 0.3}})
    )  # fmt: skip
    # ceil(0.3 · 8) = 3 image tokens, ceil(0.3 · 4) = 2 text tokens per expert
    image3 = 2 * 6 * 3 * 16 * 32 + 2 * 8 * 16 * 2
    assert capped.llm * G == pytest.approx(attention + image3 + text + LM_HEAD)
    assert analytic_flops(tiny(fusion={"arch": "mot"})).llm == analytic_flops(tiny()).llm


def test_ratio_zero_equals_unpruned():
    base = analytic_flops(tiny()).to_dict()
    for method in ("scorer", "easy", "random", "heuristic"):
        assert analytic_flops(tiny(pruning={"method": method, "ratio": 0.0})).to_dict() == base


def test_single_frame_images_are_never_pruned():
    cfg = tiny(data={"max_frames": 2}, pruning={"method": "scorer", "ratio": 0.5, "prune_at": 0})
    one = analytic_flops(cfg, frames=1)
    assert one.vision_tokens_llm == one.vision_tokens_full == 4
    assert one.reducer == 0 and one.vit_tokens_per_block == [4, 4, 4]


@pytest.mark.parametrize("method", ["scorer", "easy", "random"])
@pytest.mark.parametrize("arch", ["joint_decoder", "cross_attention", "moma"])
def test_total_decreases_monotonically_with_ratio(method, arch):
    ratios = [0.0, 0.1, 0.25, 0.4, 0.5, 0.6, 0.75, 0.85]
    totals, kept = [], []
    for r in ratios:
        # a geometry with survivors-only ViT blocks after the scorer (4 blocks, prune_at 1); with
        # the 3-block tiny default the scorer's removal comes after the last block
        cfg = ExperimentConfig.from_dict(
            {
                "vision": {"patch_size": 8, "dim": 96, "depth": 4},
                "connector": {"window": 2},
                "lm": {"dim": 128, "n_layers": 3},
                "pruning": {"method": method, "ratio": r},
                "fusion": {"arch": arch},
            }
        )
        fl = analytic_flops(cfg)
        totals.append(fl.total)
        kept.append(fl.vision_tokens_llm)
        assert fl.total == pytest.approx(fl.vit + fl.reducer + fl.connector + fl.llm)
    assert kept == sorted(kept, reverse=True) and len(set(kept)) == len(kept)
    # ratio 0 costs no scorer; every positive ratio is strictly cheaper than the one before
    assert all(a > b for a, b in zip(totals[1:], totals[2:], strict=False))
    assert totals[-1] < totals[0]


def test_random_encoder_has_no_blocks_and_vocab_argument():
    fl = analytic_flops(tiny(vision={"type": "random"}), vocab_size=10)
    assert fl.vit_blocks == [] and fl.vit == fl.patch_embed
    assert fl.llm * G == pytest.approx(jd_layer(12) + 2 * 4 * 16 * 10)
    assert analytic_flops(tiny(), text_len=6).text_len == 6
