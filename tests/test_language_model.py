"""Attention building blocks and the small decoder LM."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from core.config.language_model import LanguageModelConfig
from core.models.attention import (
    Attention,
    RMSNorm,
    RotaryEmbedding,
    apply_rope,
    attend,
    causal_with_key_padding,
)
from core.models.language_model import DecoderLM


def _lm_cfg(**kw) -> LanguageModelConfig:
    base = dict(dim=32, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=64)
    base.update(kw)
    return LanguageModelConfig(**base)


def test_rmsnorm_matches_formula():
    torch.manual_seed(0)
    norm = RMSNorm(8, eps=1e-6)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2.0)
    x = torch.randn(3, 5, 8)
    ref = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * norm.weight
    torch.testing.assert_close(norm(x), ref, rtol=1e-6, atol=1e-6)


def test_rope_scores_depend_only_on_relative_position():
    torch.manual_seed(0)
    rope = RotaryEmbedding(16, theta=10000.0)
    q, k = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)

    def score(m: int, n: int) -> torch.Tensor:
        qm = apply_rope(q, rope(torch.tensor([m])))
        kn = apply_rope(k, rope(torch.tensor([n])))
        return (qm * kn).sum()

    torch.testing.assert_close(score(7, 3), score(27, 23), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(score(2, 9), score(40, 47), rtol=1e-5, atol=1e-5)
    # Negative control: a different offset gives a different score, and RoPE preserves norms.
    assert not torch.allclose(score(7, 3), score(7, 5), atol=1e-3)
    rotated = apply_rope(q, rope(torch.tensor([13])))
    torch.testing.assert_close(rotated.norm(), q.norm())


def test_rope_batched_positions_match_shared_positions():
    rope = RotaryEmbedding(8, theta=500.0)
    x = torch.randn(2, 3, 5, 8)
    pos = torch.arange(5)
    shared = apply_rope(x, rope(pos))
    batched = apply_rope(x, rope(pos.expand(2, 5)))
    torch.testing.assert_close(shared, batched)


def test_gqa_matches_repeated_kv():
    torch.manual_seed(0)
    attn = Attention(dim=32, n_heads=8, n_kv_heads=2, head_dim=4, qk_norm=True)
    x = torch.randn(2, 6, 32)
    rope = RotaryEmbedding(4, 10000.0)(torch.arange(6))
    out = attn(x, rope)
    q = attn.project_q(x, rope)
    k, v = attn.project_kv(x, rope)
    assert k.shape[1] == 2 and q.shape[1] == 8
    k_rep, v_rep = k.repeat_interleave(4, dim=1), v.repeat_interleave(4, dim=1)
    scores = q @ k_rep.transpose(-1, -2) / 2.0  # sqrt(head_dim=4)
    scores = scores.masked_fill(~torch.ones(6, 6, dtype=torch.bool).tril(), float("-inf"))
    ref = (scores.softmax(-1) @ v_rep).transpose(1, 2).reshape(2, 6, 32)
    torch.testing.assert_close(out, attn.o_proj(ref), rtol=1e-5, atol=1e-5)


def test_mask_helper_never_leaves_a_query_without_keys():
    torch.manual_seed(0)
    patterns = [torch.rand(4, 9) > p for p in (0.0, 0.3, 0.7, 1.1)]  # incl. all-padded rows
    patterns.append(torch.tensor([[False, False, True, False, True, True, True, True, True]]))
    for valid in patterns:
        mask = causal_with_key_padding(valid)
        assert mask.shape == (valid.shape[0], 1, 9, 9) and mask.dtype == torch.bool
        assert mask.any(-1).all(), "a query row has no allowed key"
        causal = torch.ones(9, 9, dtype=torch.bool).tril()
        assert not (mask & ~causal).any(), "mask lets a query see the future"
        for b in range(valid.shape[0]):
            for i in range(9):
                row = mask[b, 0, i]
                expected = causal[i] & valid[b]
                if expected.any():
                    assert torch.equal(row, expected)  # real keys only, none padded
                else:
                    assert row.nonzero().flatten().tolist() == [i]  # guard: itself only


def test_mask_helper_rejects_non_bool():
    with pytest.raises(ValueError, match="bool"):
        causal_with_key_padding(torch.ones(2, 3))


def test_boolean_mask_path_equals_is_causal_path():
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 4, 7, 8), torch.randn(2, 2, 7, 8), torch.randn(2, 2, 7, 8)
    fast = attend(q, k, v, None, causal=True)
    masked = attend(q, k, v, causal_with_key_padding(torch.ones(2, 7, dtype=torch.bool)), True)
    torch.testing.assert_close(fast, masked, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="boolean"):
        attend(q, k, v, torch.zeros(2, 1, 7, 7), causal=True)


def test_decoder_is_causal_and_names_mirror_qwen3():
    torch.manual_seed(0)
    model = DecoderLM(_lm_cfg(qk_norm=True), vocab_size=40)
    ids = torch.randint(0, 40, (2, 10))
    logits = model(ids)
    assert logits.shape == (2, 10, 40)
    changed = ids.clone()
    changed[:, 6:] = (changed[:, 6:] + 1) % 40
    other = model(changed)
    assert torch.equal(logits[:, :6], other[:, :6])
    assert not torch.allclose(logits[:, 6:], other[:, 6:])
    names = set(model.state_dict())
    for name in (
        "embed_tokens.weight",
        "norm.weight",
        "lm_head.weight",
        "layers.1.input_layernorm.weight",
        "layers.1.post_attention_layernorm.weight",
        "layers.1.self_attn.q_proj.weight",
        "layers.1.self_attn.k_norm.weight",
        "layers.1.mlp.gate_proj.weight",
        "layers.1.mlp.down_proj.weight",
    ):
        assert name in names
    assert not any("rotary" in n for n in names)


def test_decoder_tied_embeddings_share_one_tensor():
    tied = DecoderLM(_lm_cfg(), vocab_size=20, tie_embeddings=True)
    untied = DecoderLM(_lm_cfg(), vocab_size=20)
    assert tied.lm_head.weight is tied.embed_tokens.weight
    assert untied.lm_head.weight is not untied.embed_tokens.weight
    n_tied = sum(p.numel() for p in tied.parameters())
    assert n_tied == sum(p.numel() for p in untied.parameters()) - 20 * 32


def test_decoder_learns_next_token():
    torch.manual_seed(0)
    model = DecoderLM(_lm_cfg(n_layers=1), vocab_size=16)
    ids = torch.tensor([[1, 5, 9, 3, 12, 7, 2, 11]])
    labels = torch.cat((ids[:, 1:], torch.full((1, 1), -100)), dim=1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        loss = F.cross_entropy(model(ids).flatten(0, 1), labels.flatten(), ignore_index=-100)
        opt.zero_grad()
        loss.backward()
        opt.step()
    pred = model(ids).argmax(-1)
    assert torch.equal(pred[0, :-1], ids[0, 1:])


def test_decoder_rejects_too_long_sequence():
    model = DecoderLM(_lm_cfg(max_seq_len=8), vocab_size=10)
    with pytest.raises(ValueError, match="max_seq_len=8"):
        model(torch.zeros(1, 9, dtype=torch.long))
