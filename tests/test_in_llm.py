"""In-LLM reducers (FastV, PyramidDrop) in every fusion arch: the kept counts each layer really runs
on, batch invariance with padded frames, a constructed clip whose attended tokens are known, the
drop-as-mask equivalence, all-padded clips, config-time refusals and the recorded budgets."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from core import budget
from core.config import ConfigError, ExperimentConfig
from core.efficiency.flops import analytic_flops
from core.models.attention import Attention, AttentionProbe, SwiGLU, causal_with_key_padding
from core.models.fusion import build_fusion
from core.models.visual_tokens import VisualTokens
from core.models.vlm import VideoVLM
from core.pruning.in_llm import probe_query, rank_visual
from core.registry import FUSION_ARCHS, REDUCERS
from tests.helpers_model import tiny_config, video_batch

ARCHS = ["joint_decoder", "cross_attention", "mot", "moma"]
METHODS = ["fastv", "pyramiddrop"]
VOCAB = 20
LAYERS = 4  # FastV's K = 2 and PyramidDrop's 4 stages (drops before layers 1, 2, 3) fit


def _config(
    arch: str, method: str, ratio: float, frames: int = 4, lm: dict | None = None, **sections
) -> ExperimentConfig:
    return tiny_config(
        data={"max_frames": frames},
        fusion={"arch": arch},
        lm={"n_layers": LAYERS, **(lm or {})},
        pruning={"method": method, "ratio": ratio},
        **sections,
    )


def _layer_visual_counts(model: VideoVLM, text_len: int) -> tuple[list[int], list]:
    """Hooks on every layer (cross blocks for cross_attention): the visual tokens it ran on."""
    fusion, counts, hooks = model.fusion, [], []
    if fusion.arch == "cross_attention":
        blocks = fusion.cross_blocks.values()
        hooks = [
            b.register_forward_pre_hook(lambda m, a: counts.append(a[1].shape[1])) for b in blocks
        ]
    else:
        layers = fusion.lm.layers if fusion.arch == "joint_decoder" else fusion.layers

        def record(module, args):
            x = args[0]
            counts.append(x["visual"].shape[1] if isinstance(x, dict) else x.shape[1] - text_len)

        hooks = [layer.register_forward_pre_hook(record) for layer in layers]
    return counts, hooks


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("ratio", [0.5, 0.75])  # 50% and 25% kept
@pytest.mark.parametrize("frames", [2, 4])
def test_every_layer_runs_on_the_planned_tokens_and_the_last_on_the_budget(
    arch, method, ratio, frames
):
    torch.manual_seed(0)
    cfg = _config(arch, method, ratio, frames)
    model = VideoVLM(cfg, VOCAB).eval()
    batch = video_batch(cfg, batch=2, vocab=VOCAB)
    t = cfg.data.max_text_len
    counts, hooks = _layer_visual_counts(model, t)
    with torch.no_grad():
        out = model(batch)
    for h in hooks:
        h.remove()
    flow = REDUCERS.get(method).token_flow(cfg, frames, t, VOCAB)
    kept = budget.kept_tokens(frames, cfg.tokens_per_frame, ratio)
    layers = cfg.fusion.options.layers(LAYERS) if arch == "cross_attention" else range(LAYERS)
    assert counts == [flow.llm_visual[i] for i in layers]
    assert out.visual.num_tokens == frames * cfg.tokens_per_frame  # nothing dropped before the LLM
    assert flow.llm_visual[-1] == kept and out.visual.diagnostics["llm_kept"].shape == (2, kept)
    assert counts[-1] == kept
    assert torch.isfinite(out.logits).all()


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("method", METHODS)
def test_a_batch_of_two_equals_each_clip_alone_with_padded_frames(arch, method):
    torch.manual_seed(0)
    cfg = _config(arch, method, 0.5)
    model = VideoVLM(cfg, VOCAB).eval()
    batch = video_batch(cfg, batch=2, vocab=VOCAB, seed=3)
    batch["frame_mask"][1, 2:] = False  # the second clip has two padded frames
    batch["labels"][1, :4] = -100  # and a later prompt end: the probing queries differ
    with torch.no_grad():
        both = model(batch)
        alone = [model({k: v[i : i + 1] for k, v in batch.items()}) for i in range(2)]
    for i in range(2):
        assert torch.allclose(both.logits[i], alone[i].logits[0], atol=1e-5)
        kept = both.visual.diagnostics["llm_kept"][i]
        assert torch.equal(kept, alone[i].visual.diagnostics["llm_kept"][0])
    # the padded frames' tokens (frames 2, 3 → indices 8..15) go first: 8 kept are all real
    assert (both.visual.diagnostics["llm_kept"][1] < 8).all()


# ---- a constructed clip: the query attends to known visual tokens ----------------------------
D, HEAD = 32, 16
SLOW = (HEAD // 2 - 1, HEAD - 1)  # the slowest RoPE pair: no rotation over a few positions


def _salient_model(arch: str, method: str, ratio: float):
    """An arch whose every residual update is zero (each layer passes its input through) and
    whose attention logits are the input's component along e₀, so any layer's probe sees
    q·k ∝ x_q[0]·x_k[0]: the query attends exactly to the visual tokens aligned with e₀."""
    cfg = _config(arch, method, ratio, lm={"rope_theta": 1e6})
    fusion = build_fusion(cfg.fusion, cfg.lm, VOCAB)
    with torch.no_grad():
        for m in fusion.modules():
            if isinstance(m, Attention):
                m.q_proj.weight.zero_()
                m.k_proj.weight.zero_()
                m.o_proj.weight.zero_()
                for h in range(m.n_heads):
                    for j in SLOW:
                        m.q_proj.weight[h * HEAD + j, 0] = 4.0
                for j in SLOW:
                    m.k_proj.weight[j, 0] = 4.0
            if isinstance(m, SwiGLU):
                m.down_proj.weight.zero_()
    fusion.attach_drop(REDUCERS.get(method).for_experiment(cfg))
    return cfg, fusion.eval()


def _salient_clip(salient: list[list[int]], k: int = 16) -> VisualTokens:
    b = len(salient)
    feats = torch.zeros(b, k, D)
    feats[:, :, 1] = 1.0  # every token points along e₁ (no logit) ...
    for i, idx in enumerate(salient):
        feats[i, idx, 0], feats[i, idx, 1] = 1.0, 0.0  # ... but the salient ones along e₀
    index = torch.arange(k).expand(b, -1)
    return VisualTokens(
        feats, torch.ones(b, k, dtype=torch.bool), index // 4, index % 4, num_frames=4,
        tokens_per_frame=4,
    )  # fmt: skip


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("method", METHODS)
def test_the_kept_tokens_are_the_ones_the_probing_query_attends_to(arch, method):
    cfg, fusion = _salient_model(arch, method, ratio=0.5)  # keep 8 of 16
    salient = [[0, 3, 5, 6, 9, 10, 12, 15], [1, 2, 4, 7, 8, 11, 13, 14]]
    visual = _salient_clip(salient)
    t = cfg.data.max_text_len
    ids = torch.full((2, t), 5)
    text_mask = torch.ones(2, t, dtype=torch.bool)
    with torch.no_grad():
        embed = fusion.embed_tokens if hasattr(fusion, "embed_tokens") else fusion.lm.embed_tokens
        embed.weight[5] = torch.eye(D)[1]  # text tokens along e₁: they attend to nothing
        embed.weight[6] = torch.eye(D)[0]  # the probing token along e₀
    ids[:, 3] = 6
    query = torch.tensor([3, 3])
    with torch.no_grad():
        out = fusion(visual, ids, text_mask, query=query)
        other = fusion(visual, ids, text_mask, query=torch.tensor([1, 1]))
    assert out.visual_kept.tolist() == salient
    # a query along e₁ attends to no visual token: the tie goes to the earliest tokens
    assert other.visual_kept.tolist() == [list(range(8))] * 2


def test_probe_row_equals_the_eager_attention_row_with_gqa():
    torch.manual_seed(0)
    q, k = torch.randn(2, 4, 7, 8), torch.randn(2, 2, 7, 8)
    query, valid = torch.tensor([6, 4]), torch.ones(2, 7, dtype=torch.bool)
    valid[1, 0] = False
    probe = AttentionProbe(query, valid)
    probe.record(q, k)
    kk = k.repeat_interleave(2, dim=1)
    mask = causal_with_key_padding(valid)
    logits = (q @ kk.transpose(-1, -2) / 8**0.5).masked_fill(~mask, float("-inf"))
    eager = logits.softmax(-1).mean(1)  # (B, S, S), averaged over heads
    expected = torch.stack([eager[0, 6], eager[1, 4]])
    assert torch.allclose(probe.row, expected, atol=1e-6)
    assert probe.row[1, 5:].abs().sum() == 0 and probe.row[1, 0] == 0


def test_fastv_drop_equals_masking_the_dropped_keys_in_the_later_layers():
    """FastV's own first implementation masks the dropped tokens in layers ≥ K: with positions
    kept, removing them must give the same text logits."""
    torch.manual_seed(0)
    cfg = _config("joint_decoder", "fastv", 0.5, lm={"qk_norm": True})
    model = VideoVLM(cfg, VOCAB).eval()
    batch = video_batch(cfg, batch=2, vocab=VOCAB, seed=5)
    batch["frame_mask"][0, 3] = False
    with torch.no_grad():
        out = model(batch)
        kept, lm = out.visual.diagnostics["llm_kept"], model.fusion.lm
        visual, t = out.visual, batch["input_ids"].shape[1]
        h = torch.cat((visual.features, lm.embed_tokens(batch["input_ids"])), dim=1)
        k = visual.num_tokens
        rope = lm.rotary(torch.arange(k + t))
        kept_valid = out.visual.diagnostics["llm_kept_valid"]  # clip 0 keeps its 3 frames' 6
        assert kept_valid.sum(1).tolist() == [6, 8]
        alive = torch.zeros(2, k, dtype=torch.bool).scatter_(1, kept, kept_valid)
        for i, layer in enumerate(lm.layers):
            valid = visual.valid if i < cfg.pruning.options.layer else visual.valid & alive
            key_valid = torch.cat((valid, torch.ones(2, t, dtype=torch.bool)), 1)
            h = layer(h, rope, causal_with_key_padding(key_valid))
        masked = lm.lm_head(lm.norm(h[:, k:]))
    assert torch.allclose(out.logits, masked, atol=1e-5)


@pytest.mark.parametrize(("method", "renumbered"), [("fastv", False), ("pyramiddrop", True)])
def test_pyramiddrop_renumbers_positions_and_fastv_keeps_them(method, renumbered):
    torch.manual_seed(0)
    cfg = _config("joint_decoder", method, 0.5)
    model = VideoVLM(cfg, VOCAB).eval()
    seen = []
    model.fusion.lm.rotary.register_forward_hook(lambda m, a, o: seen.append(a[0]))
    with torch.no_grad():
        out = model(video_batch(cfg, batch=1, vocab=VOCAB))
    last, kept = seen[-1], out.visual.diagnostics["llm_kept"]
    t = cfg.data.max_text_len
    if renumbered:
        assert torch.equal(last, torch.arange(kept.shape[1] + t))
    else:
        assert torch.equal(last[0, : kept.shape[1]], kept[0])
        assert torch.equal(last[0, kept.shape[1] :], 16 + torch.arange(t))


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("method", METHODS)
def test_all_padded_clips_stay_finite_in_training_and_eval(arch, method):
    torch.manual_seed(0)
    cfg = _config(arch, method, 0.75)
    model = VideoVLM(cfg, VOCAB)
    batch = video_batch(cfg, batch=2, vocab=VOCAB)
    batch["frame_mask"][0] = False
    out = model(batch)
    assert torch.isfinite(out.logits).all() and torch.isfinite(out.loss)
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    model.eval()
    with torch.no_grad():
        assert torch.isfinite(model(batch).logits).all()


def test_the_probing_query_is_the_last_prompt_token():
    labels = torch.full((3, 6), -100)
    labels[0, 2:4] = 7  # answer tokens at 3, 4: position 2 predicts the first
    text_mask = torch.ones(3, 6, dtype=torch.bool)
    text_mask[1, 4:] = False  # no labels: the last real text token
    text_mask[2] = False
    assert probe_query(labels, text_mask).tolist() == [2, 3, 0]
    assert probe_query(None, text_mask).tolist() == [5, 3, 0]


def test_the_vlm_ranks_with_the_last_prompt_token_not_an_answer_token():
    cfg = _config("joint_decoder", "fastv", 0.5)
    model = VideoVLM(cfg, VOCAB).eval()
    batch = video_batch(cfg, batch=2, vocab=VOCAB)
    batch["labels"][1, :5] = -100  # clip 1's answer starts later
    seen = {}
    model.fusion.register_forward_hook(
        lambda m, args, kwargs, out: seen.update(kwargs), with_kwargs=True
    )
    with torch.no_grad():
        model(batch)
    assert seen["query"].tolist() == [2, 5]  # the positions whose labels are the first answers


def test_padded_tokens_rank_below_every_valid_token_and_ties_go_to_the_earlier():
    row = torch.tensor([[0.0, 0.9, 0.0, 0.5, 0.0]])
    valid = torch.tensor([[True, False, True, True, True]])
    assert rank_visual(row, valid, 3).tolist() == [[0, 2, 3]]


# ---- budgets, FLOPs and refusals -------------------------------------------------------------
def test_the_vision_side_is_whole_and_both_budgets_are_recorded():
    cfg = _config("joint_decoder", "fastv", 0.5)
    assert cfg.effective_ratio == 0.0 and cfg.kept_tokens() == 16
    fl = analytic_flops(cfg, vocab_size=VOCAB)
    assert (fl.vision_tokens_llm, fl.vision_tokens_final) == (16, 8)
    assert fl.llm_kept_fraction == pytest.approx((2 * 16 + 2 * 8) / 4 / 16)
    pdrop = analytic_flops(_config("joint_decoder", "pyramiddrop", 0.5), vocab_size=VOCAB)
    assert pdrop.vision_tokens_final == 8 and pdrop.llm_kept_fraction == pytest.approx(
        (16 + 13 + 10 + 8) / 4 / 16
    )
    unpruned = analytic_flops(_config("joint_decoder", "none", 0.0), vocab_size=VOCAB)
    assert unpruned.llm > fl.llm and fl.vit == unpruned.vit


def test_probe_flops_by_hand():
    """FastV before layer 2 of a joint decoder: one row of 2 heads × 16 dims over layer 1's
    16 visual + 8 text keys."""
    cfg = _config("joint_decoder", "fastv", 0.5)
    fl = analytic_flops(cfg, vocab_size=VOCAB)
    assert fl.reducer * 1e9 == pytest.approx(2 * (16 + 8) * 2 * 16)
    xattn = analytic_flops(_config("cross_attention", "fastv", 0.5), vocab_size=VOCAB)
    assert xattn.reducer * 1e9 == pytest.approx(2 * 16 * 2 * 16)  # the visual keys only


@pytest.mark.parametrize(
    ("sections", "needle"),
    [
        ({"lm": {"n_layers": 2}, "pruning": {"fastv": {"layer": 2}}}, "pruning.fastv.layer=2"),
        ({"pruning": {"fastv": {"layer": 0}}}, "pruning.fastv.layer=0"),
        ({"pruning": {"method": "pyramiddrop"}, "lm": {"n_layers": 2}}, "a pyramid needs"),
        ({"pruning": {"method": "pyramiddrop", "pyramiddrop": {"layers": [2, 1]}}}, "increasing"),
        (
            {"fusion": {"arch": "cross_attention", "cross_attention": {"every": 3}}},
            "no cross-attention block before LLM layer 2",
        ),
        (
            {"fusion": {"arch": "cross_attention", "cross_attention": {"every": 2}},
             "lm": {"n_layers": 3}},
            "no cross-attention block at or after LLM layer 2",
        ),
    ],
)  # fmt: skip
def test_meaningless_in_llm_settings_are_refused_at_config_time(sections, needle):
    sections = dict(sections)
    base = {"method": "fastv", "ratio": 0.5}
    pruning = {**base, **sections.pop("pruning", {})}
    lm = {"n_layers": LAYERS, **sections.pop("lm", {})}
    with pytest.raises(ConfigError, match=needle) as err:
        tiny_config(pruning=pruning, lm=lm, **sections)
    assert "Fix:" in str(err.value)


def test_in_llm_methods_need_no_vit_blocks():
    cfg = _config("joint_decoder", "fastv", 0.5, vision={"type": "random"})
    model = VideoVLM(cfg, VOCAB)
    assert model.vision.reducer is None and isinstance(model.fusion.drop, nn.Module)


def test_every_arch_declares_where_it_ranks_a_drop():
    for arch in ARCHS:
        cls = FUSION_ARCHS.get(arch)
        cfg = _config(arch, "fastv", 0.5)
        assert cls.probe_layer(cfg.fusion, LAYERS, 2) == 1
