"""Analytic FLOPs: hand-computed numbers for a tiny config, invariants, extensions declaring their
own cost, and a cross-check against torch's FlopCounterMode on the real modules."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from core.config import ConfigError, ExperimentConfig
from core.config._build import fail
from core.efficiency.flops import analytic_flops
from core.extensions import Display, TokenFlow, display_metadata
from core.layers.packing import build_pack_plan
from core.models.vlm import VideoVLM
from core.pruning.base import (
    ReductionInputs,
    Selection,
    TokenReducer,
    padding_priority,
    prune_lowest,
    window_vectors,
)
from core.registry import CONNECTORS, FUSION_ARCHS, REDUCERS, VISION_ENCODERS
from tests.helpers_model import video_batch

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
    # scorer per frame (one-patch windows: the pool is v and o only): 4·P′·D² = 1024, then the
    # MLP 2·4·(256 + 256 + 16) = 4224
    assert stts.reducer * G == pytest.approx(2 * (1024 + 4224))
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
    per_token = 4 * 64 + 2 * 8 * 16  # one-patch windows: v and o 4·D², projection 2·D·d
    assert fl.connector * G == pytest.approx(8 * per_token)
    wide = analytic_flops(
        tiny(
            data={"frame_size": 16},
            connector={"type": "attentional_pool", "window": 2, "attentional_pool": {"heads": 2}},
        )
    )
    per_window = 2 * 64 + 4 * 4 * 64 + 4 * 4 * 8 + 2 * 64 + 2 * 8 * 16  # q, k·v, attention, o, proj
    assert wide.connector * G == pytest.approx(wide.vision_tokens_llm * per_window)


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


def test_llm_projections_and_attention_use_heads_times_head_dim():
    # Qwen3-style: 2 query heads × d_h 24 = 48 ≠ d = 16; 1 kv head × 24
    fl = analytic_flops(tiny(lm={"attn_head_dim": 24}))
    s, d, width, kv, m = 12, 16, 48, 24, 32
    layer = 4 * s * d * width + 4 * s * d * kv + 4 * s * s * width + 6 * s * d * m
    assert layer == 36864 + 18432 + 27648 + 36864
    assert fl.llm * G == pytest.approx(layer + LM_HEAD)
    xattn = analytic_flops(tiny(lm={"attn_head_dim": 24}, fusion={"arch": "cross_attention"}))
    t, k = 4, 8
    text_layer = 4 * t * d * width + 4 * t * d * kv + 4 * t * t * width + 6 * t * d * m
    block = 4 * t * d * width + 4 * k * d * kv + 4 * t * k * width + 6 * t * d * m
    assert xattn.llm * G == pytest.approx(text_layer + block + LM_HEAD)


# ---- a test-only reducer: one class, registered from here, nothing else edited --------------
@dataclass
class ToyConfig:
    weight: float = 1.0

    def check(self, path: str) -> None:
        if self.weight <= 0:
            fail(f"{path}.weight", self.weight, "must be positive", "use 1.0")


class ToyReducer(TokenReducer):
    """Prunes the windows whose mean feature norm (times `weight`) is lowest."""

    Config = ToyConfig
    display = Display(label="toy norm", short="toy", order=99)

    @classmethod
    def flops(cls, cfg: ExperimentConfig, flow: TokenFlow) -> int:
        return flow.frames * flow.windows * 7

    def select(self, inputs: ReductionInputs) -> Selection:
        norm = window_vectors(inputs.hidden, inputs.windows).norm(dim=-1) * self.options.weight
        priority = norm + padding_priority(inputs.frame_mask, inputs.windows.num_windows)
        return Selection(keep=prune_lowest(priority, inputs.n_prune), scores=norm)


@pytest.fixture
def registered_toy(monkeypatch):
    """Register ToyReducer as `toy` for one test; the registry is restored afterwards."""
    REDUCERS.names()  # populate first, so the restored registry is the full one
    monkeypatch.setattr(REDUCERS, "_items", dict(REDUCERS._items))
    REDUCERS.register("toy")(ToyReducer)
    return ToyReducer


def test_a_toy_reducer_gets_its_config_label_and_cost_from_its_own_class(registered_toy):
    cfg = tiny(pruning={"method": "toy", "ratio": 0.5, "prune_at": 0, "toy": {"weight": 2.0}})
    assert cfg.pruning.options == ToyConfig(weight=2.0)
    assert cfg.flat()["pruning.toy.weight"] == 2.0
    assert display_metadata(cfg)["method"] == {
        "key": "toy",
        "label": "toy norm",
        "short": "toy",
        "order": 99,
        "is_reference": False,
        "uses_ground_truth": False,
        "stage": "in_vit",
        "trained": False,
    }
    fl = analytic_flops(cfg)
    assert fl.reducer * G == pytest.approx(2 * 4 * 7)
    assert fl.vision_tokens_llm == 4 and fl.vit_tokens_per_block == [8, 4, 4]
    with pytest.raises(ConfigError, match=r"pruning\.toy\.weight=-1\.0: must be positive"):
        tiny(pruning={"method": "toy", "toy": {"weight": -1.0}})
    model = VideoVLM(cfg, 20)  # and the model runs it
    batch = video_batch(cfg, batch=2, vocab=20)
    assert model(batch).visual.num_tokens == 4


@pytest.mark.parametrize(
    ("registry", "missing"),
    [(REDUCERS, "flops"), (REDUCERS, "display"), (FUSION_ARCHS, "flops"), (CONNECTORS, "flops")],
)
def test_an_extension_without_its_spec_is_refused_at_registration(registry, missing):
    attrs = {"Config": ToyConfig, "flops": classmethod(lambda cls, cfg, flow: 0)}
    attrs.update(display=Display("x", "x", 0), token_flow=ToyReducer.token_flow)
    attrs.update(residual_visual=True)
    del attrs[missing]
    incomplete = type("Incomplete", (), attrs)
    with pytest.raises(TypeError, match=f"does not declare {missing}"):
        registry.register("incomplete")(incomplete)
    assert "incomplete" not in registry


# ---- cross-check: analytic parts vs torch's FlopCounterMode on the real modules --------------
VOCAB = 23
CROSS_TEXT = 6
SIMILARITY_PASS = ("easy", "heuristic", "oracle")  # cost = one elementwise cosine pass


def in_llm(method: str) -> bool:
    return REDUCERS.get(method).stage == "in_llm"


def cross_config(arch: str, method: str, connector: str, encoder: str) -> ExperimentConfig:
    """4 frames of 32 px, patch 8 → 4×4 patches, 2×2 windows (P′ = 4); a 4-block ViT with
    prune_at 1, so blocks run after hard removal for every method (STTS: block 3 only); an LM with
    attn_head_dim·n_heads = 48 ≠ dim = 32, and a second layer (a third for in-LLM methods, which
    drop before layers 1 and 2: FastV before layer 1, PyramidDrop's two stage ends)."""
    layers = 3 if in_llm(method) else 2
    return ExperimentConfig.from_dict(
        {
            "data": {"frame_size": 32, "max_frames": 4, "min_frames": 1,
                     "max_text_len": CROSS_TEXT, "ground_truth": method == "oracle"},
            "vision": {"type": encoder, "patch_size": 8, "dim": 32, "depth": 4, "heads": 2},
            "connector": {"type": connector, "window": 2},
            "lm": {"dim": 32, "n_layers": layers, "n_heads": 2, "n_kv_heads": 1,
                   "attn_head_dim": 24, "max_seq_len": 64},
            "pruning": {"method": method, "ratio": 0.5, "prune_at": 1, "fastv": {"layer": 1},
                        "pyramiddrop": {"stages": 3}},
            "fusion": {"arch": arch, "moma": {"image_experts": 2, "text_experts": 3}},
        }
    )  # fmt: skip


def _counted(fn) -> int:
    """FLOPs torch counts for fn(), with SDPA forced to the math kernel so attention is seen."""
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter, torch.no_grad():
        fn()
    return counter.get_total_flops()


def _entry_point(reducer) -> str:
    """The reducer method the tower calls, whose FLOPs are the reducer's (every call re-counted)."""
    if reducer.merges_in_vit:
        return "merge"
    return {"pre_vit": "plan", "post_vit": "reduce"}.get(str(reducer.stage), "select")


def _cross_cases() -> list[tuple[str, str, str, str]]:
    cases = [
        (a, m, "attentional_pool", "vit") for a in FUSION_ARCHS.names() for m in REDUCERS.names()
    ]
    cases += [("joint_decoder", m, c, "vit") for c in CONNECTORS.names()
              if c != "attentional_pool" for m in REDUCERS.names()]  # fmt: skip
    hosts = [e for e in VISION_ENCODERS.names() if VISION_ENCODERS.get(e).hosts_reducers]
    cases += [("joint_decoder", "none", "avgpool", e) for e in VISION_ENCODERS.names()
              if e not in hosts]  # fmt: skip
    return cases


@pytest.mark.parametrize(("arch", "method", "connector", "encoder"), _cross_cases())
def test_analytic_parts_agree_with_torch_flop_counter(arch, method, connector, encoder):
    """Each part is counted on its own run of the real modules (batch 1, every frame valid).

    Excluded terms, each added back exactly instead:
    - packed ViT blocks run attention on `rows × capacity²` slots of the real pack plan (the
      block-diagonal mask confines it to each frame), where the analytic model counts Σ n_f²;
    - the similarity reducers' cosine pass is an elementwise multiply-and-sum, which the counter
      does not see (it counts matrix products only): counted 0, analytic one 2·P′·w²·D pass;
    - MoMa's auxiliary eval router also runs in training (2·N·d·E per group and layer), and the
      expert-choice count is only fixed in training mode, so the LLM is counted in training mode;
    - an in-LLM reducer's probe rows run inside the LLM: counted with it, priced as the reducer.
    """
    torch.manual_seed(0)
    cfg = cross_config(arch, method, connector, encoder)
    model = VideoVLM(cfg, VOCAB).eval()
    tower, frames = model.vision, cfg.data.max_frames
    batch = video_batch(cfg, batch=1, vocab=VOCAB)
    batch["object_mask"] = torch.zeros(1, frames, 32, 32, dtype=torch.bool)
    batch["object_mask"][:, :, 0:8, 16:24] = True
    seen: dict = {"calls": []}
    tower.connector.register_forward_hook(lambda mod, args, out: seen.update(connector=args))
    if tower.reducer is not None:
        entry = _entry_point(tower.reducer)
        original = getattr(tower.reducer, entry)

        def spy(*args):
            out = original(*args)
            seen["calls"].append(args)
            if entry == "select":
                seen["keep"] = out.keep
            return out

        setattr(tower.reducer, entry, spy)

    def run_tower():
        seen["visual"] = tower(
            batch["pixel_values"], batch["frame_mask"], sample_keys=batch["sample_key"],
            object_mask=batch["object_mask"],
        )  # fmt: skip

    tower_total = _counted(run_tower)
    reducer = sum(_counted(lambda args=args: original(*args)) for args in seen["calls"])
    conn = _counted(lambda: tower.connector(*seen["connector"]))
    model.fusion.train()  # expert choice: fixed per-expert token counts
    llm = _counted(lambda: model.fusion(seen["visual"], batch["input_ids"], batch["text_mask"]))
    vit = tower_total - reducer - conn

    w, d = cfg.connector.window, cfg.vision.dim
    kept_per_frame, vit_extra = None, 0
    if "keep" in seen:
        keep = seen["keep"][0]  # (F, W)
        kept_per_frame = (keep.sum(-1) * w * w).tolist()
        plan = build_pack_plan(keep, tower.windows)
        packed = cfg.vision.depth - (cfg.pruning.prune_at + 1 + tower.reducer.hard_prune_delay)
        sum_sq = sum(n * n for n in kept_per_frame)
        vit_extra = packed * 4 * d * (plan.rows * plan.capacity**2 - sum_sq)
    fl = analytic_flops(cfg, text_len=CROSS_TEXT, kept_per_frame=kept_per_frame, vocab_size=VOCAB)
    reducer_seen = 0 if method in SIMILARITY_PASS or in_llm(method) else fl.reducer * G
    if method in SIMILARITY_PASS:
        assert fl.reducer * G == frames * 2 * 4 * w * w * d
    llm_extra = fl.reducer * G if in_llm(method) else 0
    if in_llm(method):
        assert fl.reducer > 0 and fl.vision_tokens_final < fl.vision_tokens_llm
    if arch == "moma" and cfg.fusion.options.eval_router == "aux":
        t, opts = CROSS_TEXT, cfg.fusion.options
        per_layer = REDUCERS.get(method).token_flow(cfg, frames, t, VOCAB).llm_visual
        llm_extra += sum(
            2 * cfg.lm.dim * (k * opts.image_experts + t * opts.text_experts) for k in per_layer
        )

    assert vit == pytest.approx(fl.vit * G + vit_extra, rel=0.02)
    assert reducer == pytest.approx(reducer_seen, rel=0.02)
    assert conn == pytest.approx(fl.connector * G, rel=0.02)
    assert llm == pytest.approx(fl.llm * G + llm_extra, rel=0.02)
    assert seen["visual"].num_tokens == fl.vision_tokens_llm


def test_flops_table_smoke_counts_agree_on_the_meta_device(tmp_path):
    """benchmarks/flops_table.py --smoke: meta-device FlopCounterMode vs analytic, toy shapes with
    attn_head_dim·n_heads ≠ dim (the Molmo2/Qwen3 structure)."""
    out = tmp_path / "table.md"
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "flops_table.py"
    run = subprocess.run(
        [sys.executable, str(script), "--smoke", "--out", str(out)],
        capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    rows = [ln for ln in out.read_text().splitlines() if ln.startswith("| ") and ln[2].isdigit()]
    assert len(rows) == 6  # 4 and 8 frames × topk 0, 0.3, 0.5
    assert "largest |deviation|: 0.000%" in run.stdout, run.stdout
