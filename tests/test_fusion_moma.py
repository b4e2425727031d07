"""`moma`: expert-choice routing, padding never takes capacity, batch-independent eval routers."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F

from core.config.fusion import FusionConfig
from core.config.language_model import LanguageModelConfig
from core.models.fusion import build_fusion
from core.models.fusion.moma import (
    ExpertGroup,
    MoMaConfig,
    MoMaFFN,
    expert_capacity,
    experts_per_token,
)
from core.models.visual_tokens import VisualTokens

V, DIM = 31, 32


def _lm() -> LanguageModelConfig:
    return LanguageModelConfig(dim=DIM, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=64)


def _visual(features: torch.Tensor, valid: torch.Tensor) -> VisualTokens:
    b, k = valid.shape
    zeros = torch.zeros(b, k, dtype=torch.long)
    return VisualTokens(features, valid, zeros, zeros, num_frames=1, tokens_per_frame=k)


def _model(**options):
    torch.manual_seed(0)
    return build_fusion(FusionConfig(arch="moma", options=MoMaConfig(**options)), _lm(), V)


def _batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(3, 6, DIM, generator=g)
    valid = torch.ones(3, 6, dtype=torch.bool)
    valid[1, 4:] = False
    valid[2, 2:] = False
    ids = torch.randint(1, V, (3, 7), generator=g)
    text_mask = torch.ones(3, 7, dtype=torch.bool)
    text_mask[0, 5:] = False
    text_mask[2, 6:] = False
    return feats, valid, ids, text_mask


def _expert(e, x):
    return e.down_proj(F.silu(e.gate_proj(x)) * e.up_proj(x))


def test_capacity_and_experts_per_token_formulas():
    assert expert_capacity(30, Fraction("0.1")) == 3  # float 0.1·30 would ceil to 4
    assert expert_capacity(10, Fraction(1, 4)) == 3
    assert expert_capacity(1, Fraction(1, 4)) == 1  # at least one token
    assert expert_capacity(3, Fraction(1)) == 3  # at most N
    assert experts_per_token(4, Fraction(1, 4)) == 1
    assert experts_per_token(3, Fraction(1, 2)) == 2  # 1.5 rounds up
    assert experts_per_token(4, Fraction(1, 8)) == 1  # at least one expert
    assert experts_per_token(4, Fraction(1)) == 4


def test_expert_choice_matches_reference():
    torch.manual_seed(0)
    group = ExpertGroup(DIM, 24, 3, Fraction(1, 3), "aux").train()
    x = torch.randn(10, DIM)
    y, chosen, info = group(x)
    scores = torch.sigmoid(x @ group.router.weight.T)
    k = math.ceil(10 / 3)
    ref = torch.zeros_like(x)
    for e, expert in enumerate(group.experts):
        top = scores[:, e].topk(k).indices
        assert set(chosen[:, e].nonzero().flatten().tolist()) == set(top.tolist())
        ref[top] += scores[top, e, None] * _expert(expert, x[top])
    assert (chosen.sum(0) == k).all()
    torch.testing.assert_close(y, ref, rtol=1e-6, atol=1e-6)
    assert {"aux_loss", "aux_acc"} <= set(info)


@pytest.mark.parametrize("router", ["aux", "token_choice"])
def test_eval_routers_match_reference(router):
    torch.manual_seed(1)
    group = ExpertGroup(DIM, 24, 4, Fraction(1, 2), router).eval()
    x = torch.randn(9, DIM)
    y, chosen, info = group(x)
    scores = torch.sigmoid(x @ group.router.weight.T)
    if router == "aux":
        expected = torch.sigmoid(group.aux_router(x)) > 0.5
    else:
        expected = torch.zeros_like(chosen)
        expected.scatter_(1, scores.topk(2, dim=1).indices, True)
        assert (chosen.sum(1) == 2).all()
    assert torch.equal(chosen, expected) and chosen.any()
    ref = torch.zeros_like(x)
    for e, expert in enumerate(group.experts):
        ref += expected[:, e, None] * scores[:, e, None] * _expert(expert, x)
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-6)
    assert info == {}


def _ffn_inputs():
    """(B=2, S=9): positions 0..4 visual, 5..8 text; some visual and text padding."""
    torch.manual_seed(2)
    x = torch.randn(2, 9, DIM)
    vis = torch.zeros(2, 9, dtype=torch.bool)
    vis[0, :5] = True
    vis[1, :2] = True  # visual positions 2..4 of sample 1 are padded
    txt = torch.zeros(2, 9, dtype=torch.bool)
    txt[0, 5:] = True
    txt[1, 5:7] = True  # text positions 7, 8 of sample 1 are right padding
    return x, {"visual": vis, "text": txt}


def test_padded_tokens_take_no_capacity():
    ffn = MoMaFFN(_lm(), FusionConfig(arch="moma")).train()
    x, routable = _ffn_inputs()
    real = routable["visual"] | routable["text"]
    records: list[dict] = []
    base = ffn(x, routable, records)
    # Padded features aimed at every router: they would win every expert's top-k if routable.
    lure = x.clone()
    for m, group in ffn.groups.items():
        direction = group.router.weight.sum(0)
        region = slice(0, 5) if m == "visual" else slice(5, 9)
        pad = ~real[:, region]
        lure[:, region][pad] = 50.0 * direction / direction.norm()
    lured_records: list[dict] = []
    lured = ffn(lure, routable, lured_records)
    assert torch.equal(base[real], lured[real])
    for a, b in zip(records, lured_records, strict=True):
        assert a["n"] == b["n"] and torch.equal(a["load"], b["load"])
    # More padded positions (a longer padded tail) change nothing either.
    longer = torch.cat((lure, torch.randn(2, 4, DIM)), dim=1)
    pad_cols = torch.zeros(2, 4, dtype=torch.bool)
    longer_routable = {m: torch.cat((r, pad_cols), dim=1) for m, r in routable.items()}
    assert torch.equal(ffn(longer, longer_routable, [])[:, :9][real], base[real])
    # Loads count only real tokens: N = 7 visual, 6 text; 4 experts each, capacity 1/4.
    assert [(r["group"], r["n"]) for r in records] == [("visual", 7), ("text", 6)]
    assert records[0]["load"].tolist() == [2] * 4 and records[1]["load"].tolist() == [2] * 4
    # Negative control: if the padded tokens were routable, they would steal real tokens' slots.
    leaky = {m: r | ~real for m, r in routable.items()}
    leaky["visual"][:, 5:] = False
    leaky["text"][:, :5] = False
    assert not torch.equal(ffn(lure, leaky, [])[real], base[real])


def test_model_stats_count_only_real_tokens():
    feats, valid, ids, text_mask = _batch()
    out = _model()(_visual(feats, valid), ids, text_mask)
    n_vis, n_txt = int(valid.sum()), int(text_mask.sum())
    assert out.stats["moma/visual/routable_tokens"] == n_vis
    assert out.stats["moma/text/routable_tokens"] == n_txt
    for e in range(4):
        assert out.stats[f"moma/visual/expert{e}/tokens"] == math.ceil(n_vis / 4)
        assert out.stats[f"moma/text/expert{e}/load"] == pytest.approx(math.ceil(n_txt / 4) / n_txt)
    assert "moma/text/aux_router_accuracy" in out.stats


@pytest.mark.parametrize("router", ["aux", "token_choice"])
def test_eval_output_of_a_sample_does_not_depend_on_its_batch(router):
    feats, valid, ids, text_mask = _batch()
    model = _model(eval_router=router).eval()
    batched = model(_visual(feats, valid), ids, text_mask)
    used = sum(v for k, v in batched.stats.items() if k.endswith("/tokens"))
    assert used > 0  # the routers do send tokens to experts
    assert batched.aux_loss is None
    for i in range(3):
        alone = model(
            _visual(feats[i : i + 1], valid[i : i + 1]), ids[i : i + 1], text_mask[i : i + 1]
        ).logits
        real = text_mask[i]
        torch.testing.assert_close(alone[0][real], batched.logits[i][real], rtol=1e-6, atol=1e-6)


def test_training_expert_choice_depends_on_the_batch():
    """Negative control for the eval test: batch-level top-k mixes samples."""
    feats, valid, ids, text_mask = _batch()
    model = _model().train()
    batched = model(_visual(feats, valid), ids, text_mask).logits
    alone = model(_visual(feats[:1], valid[:1]), ids[:1], text_mask[:1]).logits
    assert not torch.allclose(alone[0][text_mask[0]], batched[0][text_mask[0]], atol=1e-4)


def test_aux_router_trains_on_detached_inputs_and_learns_expert_choice():
    feats, valid, ids, text_mask = _batch()
    model = _model().train()
    visual = _visual(feats, valid)
    aux_params = [p for n, p in model.named_parameters() if ".aux_router." in n]
    out = model(visual, ids, text_mask)
    out.aux_loss.backward()
    for name, p in model.named_parameters():
        has_grad = p.grad is not None and p.grad.abs().sum() > 0
        assert has_grad == (".aux_router." in name), name
    model.zero_grad(set_to_none=True)
    model(visual, ids, text_mask).logits.logsumexp(-1).mean().backward()
    assert all(p.grad is None for p in aux_params)

    opt = torch.optim.Adam(aux_params, lr=5e-2)
    first = None
    for _ in range(80):
        out = model(visual, ids, text_mask)
        first = first if first is not None else out.aux_loss.item()
        opt.zero_grad()
        out.aux_loss.backward()
        opt.step()
    out = model(visual, ids, text_mask)
    assert out.aux_loss.item() < 0.5 * first
    assert out.stats["moma/visual/aux_router_accuracy"] >= 0.95
    assert out.stats["moma/text/aux_router_accuracy"] >= 0.95


def test_router_group_and_token_choice_builds_no_aux_router():
    model = _model(eval_router="token_choice")
    assert not any(".aux_router." in n for n, _ in model.named_parameters())
    assert model.train()(_visual(*_batch()[:2]), *_batch()[2:]).aux_loss is None
    groups = model.parameter_groups()
    router_ids = {id(p) for p in groups["router"]}
    for name, p in model.named_parameters():
        assert (id(p) in router_ids) == (".router." in name), name
    vis_ids = {id(p) for p in groups["vision_adapters"]}
    assert id(model.layers[0].mlp.groups["visual"].experts[0].up_proj.weight) in vis_ids
    assert id(model.layers[0].mlp.groups["text"].experts[0].up_proj.weight) not in vis_ids
