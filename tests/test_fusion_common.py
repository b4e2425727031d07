"""Contract tests shared by all four fusion archs: masks, NaN safety, label alignment, groups."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from core.budget import residual_visual_tokens
from core.config.fusion import FusionConfig
from core.models.fusion import PARAMETER_GROUPS, FusionOutput, build_fusion
from core.models.visual_tokens import VisualTokens
from tests.helpers_model import fusion_lm

ARCHS = ("joint_decoder", "cross_attention", "mot", "moma")
V = 37


def _visual(features: torch.Tensor, valid: torch.Tensor) -> VisualTokens:
    b, k = valid.shape
    idx = torch.arange(k).expand(b, k)
    return VisualTokens(
        features, valid, idx // 3, idx % 3, num_frames=max(1, k // 3), tokens_per_frame=3
    )


def _batch(seed: int = 0, b: int = 3, k: int = 6, t: int = 7):
    """Sample 0 all valid, sample 1 last frame padded, sample 2 fully padded; text right-padded."""
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(b, k, 32, generator=g)
    valid = torch.ones(b, k, dtype=torch.bool)
    valid[1, k - 3 :] = False
    valid[2] = False
    ids = torch.randint(1, V, (b, t), generator=g)
    text_mask = torch.ones(b, t, dtype=torch.bool)
    text_mask[0, t - 2 :] = False
    ids[~text_mask] = 0
    return feats, valid, ids, text_mask


def _model(arch: str, seed: int = 0, **fusion_kw):
    torch.manual_seed(seed)
    model = build_fusion(FusionConfig(arch=arch, **fusion_kw), fusion_lm(2), V)
    if arch == "cross_attention":  # make the zero-initialised blocks matter
        for block in model.cross_blocks.values():
            torch.nn.init.normal_(block.cross_attn.o_proj.weight, std=0.2)
            torch.nn.init.normal_(block.mlp.down_proj.weight, std=0.2)
    return model


@pytest.mark.parametrize("arch", ARCHS)
def test_forward_backward_with_padded_visual_tokens(arch):
    feats, valid, ids, text_mask = _batch()
    model = _model(arch)
    feats.requires_grad_(True)
    out = model(_visual(feats, valid), ids, text_mask)
    assert isinstance(out, FusionOutput)
    assert out.logits.shape == (3, 7, V)
    assert torch.isfinite(out.logits).all()
    assert all(isinstance(v, float) for v in out.stats.values())
    loss = out.logits.logsumexp(-1).mean()
    if out.aux_loss is not None:
        assert out.aux_loss.dim() == 0
        loss = loss + out.aux_loss
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    # Padded visual tokens receive exactly zero gradient; real ones receive some.
    assert torch.equal(feats.grad[~valid], torch.zeros_like(feats.grad[~valid]))
    assert feats.grad[valid].abs().sum() > 0


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("arch", ARCHS)
def test_padded_visual_features_never_change_real_text_logits(arch, train):
    feats, valid, ids, text_mask = _batch()
    model = _model(arch).train(train)
    base = model(_visual(feats, valid), ids, text_mask).logits
    changed = feats.clone()
    changed[~valid] = torch.randn_like(changed[~valid]) * 5.0
    after = model(_visual(changed, valid), ids, text_mask).logits
    assert torch.equal(base[text_mask], after[text_mask])
    # Negative control: with the mask ignored (all tokens valid) the same change is visible.
    all_valid = torch.ones_like(valid)
    ctrl_base = model(_visual(feats, all_valid), ids, text_mask).logits
    ctrl_after = model(_visual(changed, all_valid), ids, text_mask).logits
    assert not torch.allclose(ctrl_base[1][text_mask[1]], ctrl_after[1][text_mask[1]])


@pytest.mark.parametrize("arch", ARCHS)
def test_all_padded_clip_is_finite_in_logits_and_grads(arch):
    feats, valid, ids, text_mask = _batch()
    valid[:] = False  # every clip of the batch fully padded
    model = _model(arch)
    feats.requires_grad_(True)
    out = model(_visual(feats, valid), ids, text_mask)
    assert torch.isfinite(out.logits).all()
    loss = out.logits.logsumexp(-1).mean() + (out.aux_loss if out.aux_loss is not None else 0)
    loss.backward()
    for name, p in model.named_parameters():
        if p.grad is not None:
            assert torch.isfinite(p.grad).all(), name
    assert torch.equal(feats.grad, torch.zeros_like(feats.grad))


def _next_token_labels(ids: torch.Tensor, text_mask: torch.Tensor, prompt: int) -> torch.Tensor:
    labels = torch.full_like(ids, -100)
    labels[:, :-1] = ids[:, 1:]
    labels[:, :-1][~text_mask[:, 1:]] = -100  # the token after t is padding → nothing to predict
    labels[:, : prompt - 1] = -100  # prompt tokens are not targets
    return labels


@pytest.mark.parametrize("arch", ARCHS)
def test_logit_at_t_predicts_token_t_plus_1(arch):
    torch.manual_seed(0)
    ids = torch.tensor([[1, 5, 9, 3, 12, 7, 20, 0], [1, 30, 4, 17, 8, 25, 6, 14]])
    text_mask = ids != 0
    text_mask[1] = True
    labels = _next_token_labels(ids, text_mask, prompt=2)
    feats = torch.randn(2, 6, 32)
    valid = torch.ones(2, 6, dtype=torch.bool)
    valid[0, 3:] = False
    visual = _visual(feats, valid)
    model = build_fusion(FusionConfig(arch=arch), fusion_lm(1), V)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(120):
        out = model(visual, ids, text_mask)
        loss = F.cross_entropy(out.logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
        if out.aux_loss is not None:
            loss = loss + out.aux_loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    pred = model(visual, ids, text_mask).logits.argmax(-1)
    target = labels != -100
    assert torch.equal(pred[target], labels[target])
    # The copy task (the label-shift bug) would predict the token itself instead.
    assert not torch.equal(pred[target], ids[target])


@pytest.mark.parametrize("arch", ARCHS)
def test_ignored_labels_and_text_padding_contribute_nothing(arch):
    feats, valid, ids, text_mask = _batch()
    model = _model(arch)
    labels = _next_token_labels(ids, text_mask, prompt=3)
    logits = model(_visual(feats, valid), ids, text_mask).logits.detach().requires_grad_(True)
    loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
    loss.backward()
    ignored = labels == -100
    assert ignored.any() and (~ignored).any()
    assert torch.equal(logits.grad[ignored], torch.zeros_like(logits.grad[ignored]))
    assert logits.grad[~ignored].abs().sum() > 0
    # Changing the ids under right padding leaves every real text logit bit-identical.
    repadded = ids.clone()
    repadded[~text_mask] = 11
    again = model(_visual(feats, valid), repadded, text_mask).logits
    assert torch.equal(again[text_mask], logits.detach()[text_mask])


@pytest.mark.parametrize("arch", ARCHS)
def test_parameter_groups_partition_parameters(arch):
    model = _model(arch)
    groups = model.parameter_groups()
    assert tuple(groups) == PARAMETER_GROUPS
    seen = [id(p) for ps in groups.values() for p in ps]
    assert len(seen) == len(set(seen))
    assert set(seen) == {id(p) for p in model.parameters()}
    assert groups["lm"]
    assert bool(groups["vision_adapters"]) == (arch != "joint_decoder")
    assert bool(groups["router"]) == (arch == "moma")


@pytest.mark.parametrize("arch", ARCHS)
def test_residual_tokens_match_budget_and_length_is_checked(arch):
    model = _model(arch)
    for k in (0, 5, 48):
        assert model.num_residual_visual_tokens(k) == residual_visual_tokens(arch, k)
    assert model.num_residual_visual_tokens(48) == (0 if arch == "cross_attention" else 48)
    feats = torch.randn(1, 60, 32)
    visual = _visual(feats, torch.ones(1, 60, dtype=torch.bool))
    ids = torch.ones(1, 10, dtype=torch.long)
    mask = torch.ones(1, 10, dtype=torch.bool)
    if arch == "cross_attention":
        assert model(visual, ids, mask).logits.shape == (1, 10, V)
    else:
        with pytest.raises(ValueError, match="lm.max_seq_len=64"):
            model(visual, ids, mask)


def test_bad_inputs_name_the_field():
    model = _model("joint_decoder")
    feats, valid, ids, text_mask = _batch()
    with pytest.raises(ValueError, match="lm.dim=32"):
        model(_visual(torch.randn(3, 6, 16), valid), ids, text_mask)
    with pytest.raises(ValueError, match="text_mask"):
        model(_visual(feats, valid), ids, text_mask.long())
    with pytest.raises(ValueError, match="input_ids"):
        model(_visual(feats, valid), ids.float(), text_mask)


def test_unknown_arch_gets_a_helpful_registry_error():
    with pytest.raises(ValueError, match=r"fusion\.arch='mott'.*Did you mean 'mot'"):
        FusionConfig(arch="mott")
    cfg = FusionConfig()
    cfg.arch = "joint_decoderr"  # mutated after validation: build_fusion re-checks
    with pytest.raises(ValueError, match=r"unknown fusion arch.*joint_decoder.*Available"):
        build_fusion(cfg, fusion_lm(2), V)
