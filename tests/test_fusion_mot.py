"""`mot`: parity with a hand-written Algorithm 1 (arXiv 2411.04996) and per-modality weights."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from core.config.fusion import FusionConfig
from core.config.language_model import LanguageModelConfig
from core.models.fusion import build_fusion
from core.models.visual_tokens import VisualTokens

V, DIM, H, KV, HD, THETA = 23, 32, 4, 2, 8, 10000.0


def _lm() -> LanguageModelConfig:
    return LanguageModelConfig(
        dim=DIM,
        n_layers=2,
        n_heads=H,
        n_kv_heads=KV,
        max_seq_len=64,
        qk_norm=True,
        rope_theta=THETA,
    )


def _visual(features: torch.Tensor, valid: torch.Tensor) -> VisualTokens:
    b, k = valid.shape
    zeros = torch.zeros(b, k, dtype=torch.long)
    return VisualTokens(features, valid, zeros, zeros, num_frames=1, tokens_per_frame=k)


def _rms(x, w):
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * w


def _rope(x, pos):
    """x (S, heads, HD) rotated at integer positions pos (S,), half-split layout."""
    freqs = THETA ** (-torch.arange(0, HD, 2, dtype=torch.float64) / HD)
    ang = pos.double()[:, None] * freqs
    cos, sin = ang.cos().float()[:, None], ang.sin().float()[:, None]
    x1, x2 = x[..., : HD // 2], x[..., HD // 2 :]
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


def _reference(model, feats, valid, ids, restart_positions=False):
    """Algorithm 1, one sample at a time, looping over modalities with explicit matmuls."""
    outs = []
    for i in range(ids.shape[0]):
        k, t = feats.shape[1], ids.shape[1]
        x = {"visual": feats[i], "text": model.embed_tokens.weight[ids[i]]}
        pos = {"visual": torch.arange(k), "text": torch.arange(k, k + t)}
        if restart_positions:
            pos["text"] = torch.arange(t)
        key_ok = torch.cat((valid[i], torch.ones(t, dtype=torch.bool)))
        for layer in model.layers:
            q, kk, vv = {}, {}, {}
            for m in ("visual", "text"):
                p = layer.experts[m]
                a = p.self_attn
                xn = _rms(x[m], p.input_layernorm.weight)
                n = xn.shape[0]
                q[m] = _rope(_rms((xn @ a.q_proj.weight.T).view(n, H, HD), a.q_norm.weight), pos[m])
                kk[m] = _rope(
                    _rms((xn @ a.k_proj.weight.T).view(n, KV, HD), a.k_norm.weight), pos[m]
                )
                vv[m] = (xn @ a.v_proj.weight.T).view(n, KV, HD)
            qa = torch.cat((q["visual"], q["text"]))
            ka = torch.cat((kk["visual"], kk["text"]))
            va = torch.cat((vv["visual"], vv["text"]))
            s_len = qa.shape[0]
            allowed = torch.ones(s_len, s_len, dtype=torch.bool).tril() & key_ok[None]
            allowed |= ~allowed.any(-1, keepdim=True) & torch.eye(s_len, dtype=torch.bool)
            ctx = torch.empty(s_len, H, HD)
            for head in range(H):
                sc = qa[:, head] @ ka[:, head // (H // KV)].T / HD**0.5
                sc = sc.masked_fill(~allowed, float("-inf"))
                ctx[:, head] = sc.softmax(-1) @ va[:, head // (H // KV)]
            ctx = {"visual": ctx[:k].reshape(k, DIM), "text": ctx[k:].reshape(t, DIM)}
            for m in ("visual", "text"):
                p = layer.experts[m]
                h = x[m] + ctx[m] @ p.self_attn.o_proj.weight.T
                hn = _rms(h, p.post_attention_layernorm.weight)
                f = F.silu(hn @ p.mlp.gate_proj.weight.T) * (hn @ p.mlp.up_proj.weight.T)
                x[m] = h + f @ p.mlp.down_proj.weight.T
        outs.append(_rms(x["text"], model.norm["text"].weight) @ model.lm_head.weight.T)
    return torch.stack(outs)


def _setup():
    torch.manual_seed(0)
    model = build_fusion(FusionConfig(arch="mot"), _lm(), V)
    with torch.no_grad():  # distinct norm weights so a swapped modality would show
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or ".norm." in name:
                p.uniform_(0.5, 1.5)
    feats = torch.randn(2, 5, DIM)
    valid = torch.tensor([[True] * 5, [True, True, True, False, False]])
    ids = torch.randint(0, V, (2, 6))
    return model, feats, valid, ids


def test_mot_matches_algorithm_1_reference():
    model, feats, valid, ids = _setup()
    with torch.no_grad():
        got = model(_visual(feats, valid), ids, torch.ones_like(ids, dtype=torch.bool)).logits
        ref = _reference(model, feats, valid, ids)
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
        # Negative control: restarting text positions at 0 (the seed's quirk) is a different model.
        restarted = _reference(model, feats, valid, ids, restart_positions=True)
    assert not torch.allclose(got, restarted, atol=1e-4)


def test_each_modality_has_its_own_weights():
    model, feats, valid, ids = _setup()
    text_mask = torch.ones_like(ids, dtype=torch.bool)
    base = model(_visual(feats, valid), ids, text_mask).logits
    layer = model.layers[0].experts
    assert layer["visual"].self_attn.q_proj.weight is not layer["text"].self_attn.q_proj.weight
    with torch.no_grad():  # perturb the visual copy's value projection only
        layer["visual"].self_attn.v_proj.weight.add_(0.5)
    changed = model(_visual(feats, valid), ids, text_mask).logits
    assert not torch.allclose(base, changed)
    # Visual copies (and the visual final norm) form the vision_adapters group; text copies don't.
    vis_ids = {id(p) for p in model.parameter_groups()["vision_adapters"]}
    assert id(layer["visual"].self_attn.v_proj.weight) in vis_ids
    assert id(layer["text"].self_attn.v_proj.weight) not in vis_ids
    assert id(model.norm["visual"].weight) in vis_ids
