"""`cross_attention`: identity at init, reference parity, masking semantics, all-padded clips."""

from __future__ import annotations

import torch

from core.config.fusion import FusionConfig
from core.models.fusion import build_fusion
from core.models.fusion.cross_attention import CrossAttentionConfig
from core.models.language_model import DecoderLM
from core.models.visual_tokens import VisualTokens
from tests.helpers_model import fusion_lm

V = 29


def _visual(features: torch.Tensor, valid: torch.Tensor) -> VisualTokens:
    b, k = valid.shape
    zeros = torch.zeros(b, k, dtype=torch.long)
    return VisualTokens(features, valid, zeros, zeros, num_frames=1, tokens_per_frame=k)


def _randomise_blocks(model) -> None:
    for block in model.cross_blocks.values():
        torch.nn.init.normal_(block.cross_attn.o_proj.weight, std=0.2)
        torch.nn.init.normal_(block.mlp.down_proj.weight, std=0.2)


def _model(**options):
    torch.manual_seed(0)
    fusion = FusionConfig(arch="cross_attention", options=CrossAttentionConfig(**options))
    return build_fusion(fusion, fusion_lm(4), V)


def test_blocks_follow_every_nth_text_block():
    assert list(_model(every=1).cross_blocks) == ["0", "1", "2", "3"]
    assert list(_model(every=2).cross_blocks) == ["1", "3"]
    assert list(_model(every=3).cross_blocks) == ["2"]


def test_fresh_model_equals_text_only_decoder_exactly():
    model = _model(every=2)
    decoder = DecoderLM(fusion_lm(4), V)
    decoder.load_state_dict(model.lm.state_dict())
    ids = torch.randint(0, V, (2, 9))
    valid = torch.tensor([[True] * 5, [True, True, False, False, False]])
    out = model(_visual(torch.randn(2, 5, 32), valid), ids, torch.ones(2, 9, dtype=torch.bool))
    assert torch.equal(out.logits, decoder(ids))
    # Negative control: once a block is non-zero, the visual tokens change the text logits.
    _randomise_blocks(model)
    out = model(_visual(torch.randn(2, 5, 32), valid), ids, torch.ones(2, 9, dtype=torch.bool))
    assert not torch.allclose(out.logits, decoder(ids))


def _rms(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * w


def _reference_block(block, h, feats, valid):
    """Cross-attention written out: per-head softmax over the valid visual keys only."""
    a = block.cross_attn
    b, t, _ = h.shape
    k_len = feats.shape[1]
    x = _rms(h, block.input_layernorm.weight)
    q = (x @ a.q_proj.weight.T).view(b, t, 4, 8)
    k = (feats @ a.k_proj.weight.T).view(b, k_len, 2, 8)
    v = (feats @ a.v_proj.weight.T).view(b, k_len, 2, 8)
    q, k = _rms(q, a.q_norm.weight), _rms(k, a.k_norm.weight)
    out = torch.zeros(b, t, 4, 8)
    for i in range(b):
        keys = valid[i].nonzero().flatten()
        for head in range(4):
            kv = head // 2
            if keys.numel() == 0:
                continue  # nothing to attend to: contributes exactly 0
            s = q[i, :, head] @ k[i, keys, kv].T / 8**0.5
            out[i, :, head] = s.softmax(-1) @ v[i, keys, kv]
    h = h + out.reshape(b, t, 32) @ a.o_proj.weight.T
    m = block.mlp
    x = _rms(h, block.post_attention_layernorm.weight)
    mlp = torch.nn.functional.silu(x @ m.gate_proj.weight.T) * (x @ m.up_proj.weight.T)
    return h + mlp @ m.down_proj.weight.T


def _call_block(block, h, feats, valid):
    has_key = valid.any(1)[:, None, None]
    key_mask = (valid[:, None, :] | ~has_key)[:, None]
    return block(h, feats, key_mask, has_key)


def test_block_matches_reference_attention():
    model = _model()
    _randomise_blocks(model)
    block = model.cross_blocks["0"]
    torch.manual_seed(1)
    h, feats = torch.randn(3, 6, 32), torch.randn(3, 5, 32)
    valid = torch.tensor([[True] * 5, [True, False, True, False, True], [False] * 5])
    got = _call_block(block, h, feats, valid)
    torch.testing.assert_close(got, _reference_block(block, h, feats, valid), rtol=1e-5, atol=1e-5)


def test_masking_a_visual_position_equals_removing_it():
    model = _model()
    _randomise_blocks(model)
    torch.manual_seed(2)
    feats = torch.randn(1, 6, 32)
    ids = torch.randint(0, V, (1, 8))
    text_mask = torch.ones(1, 8, dtype=torch.bool)
    valid = torch.ones(1, 6, dtype=torch.bool)
    valid[0, 2] = False
    masked = model(_visual(feats, valid), ids, text_mask).logits
    kept = torch.tensor([0, 1, 3, 4, 5])
    removed = model(_visual(feats[:, kept], torch.ones(1, 5, dtype=torch.bool)), ids, text_mask)
    torch.testing.assert_close(masked, removed.logits, rtol=1e-5, atol=1e-5)
    # Negative control: keeping position 2 valid gives different logits.
    full = model(_visual(feats, torch.ones(1, 6, dtype=torch.bool)), ids, text_mask).logits
    assert not torch.allclose(masked, full, atol=1e-4)


def test_all_padded_clip_cross_attention_contributes_exactly_zero():
    model = _model()
    _randomise_blocks(model)
    block = model.cross_blocks["0"]
    torch.manual_seed(3)
    h = torch.randn(2, 4, 32, requires_grad=True)
    feats = torch.randn(2, 5, 32, requires_grad=True)
    valid = torch.tensor([[False] * 5, [True, True, False, False, False]])
    out = _call_block(block, h, feats, valid)
    expected = h + block.mlp(block.post_attention_layernorm(h))  # attention part is exactly 0
    assert torch.equal(out[0], expected[0])
    assert not torch.allclose(out[1], expected[1])
    out.sum().backward()
    assert torch.isfinite(h.grad).all() and torch.isfinite(feats.grad).all()
    assert torch.equal(feats.grad[0], torch.zeros_like(feats.grad[0]))
