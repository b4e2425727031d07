"""Checkpoint loading: Qwen3 (HF parity, checks, build_fusion warm start) and the SigLIP2 encoder."""

from __future__ import annotations

import json

import pytest
import torch

from core.config.fusion import FusionConfig
from core.config.language_model import LanguageModelConfig
from core.models.fusion import build_fusion
from core.models.language_model import DecoderLM
from core.models.qwen3 import load_qwen3
from core.models.visual_tokens import VisualTokens


@pytest.mark.hf
@pytest.mark.parametrize("tied", [True, False])
def test_tiny_hf_qwen3_logits_match_our_decoder(tmp_path, tied):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("safetensors")
    torch.manual_seed(0)
    hf_cfg = transformers.Qwen3Config(
        vocab_size=61,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,  # head_dim·heads ≠ hidden, as in Qwen3-0.6B
        max_position_embeddings=128,
        rope_theta=5000.0,
        tie_word_embeddings=tied,
    )
    hf = transformers.Qwen3ForCausalLM(hf_cfg).eval()
    with torch.no_grad():  # non-trivial norm weights so a mis-mapped norm would show
        for name, p in hf.named_parameters():
            if name.endswith("norm.weight"):
                p.uniform_(0.5, 1.5)
    hf.save_pretrained(tmp_path)

    state, fields = load_qwen3(tmp_path)
    assert fields["attn_head_dim"] == 16 and fields["n_kv_heads"] == 2
    assert fields["rope_theta"] == 5000.0 and fields["qk_norm"] is True
    cfg = LanguageModelConfig(max_seq_len=128, **fields)
    ours = DecoderLM(cfg, fields["vocab_size"])
    ours.load_state_dict(state, strict=True)
    ids = torch.randint(0, 61, (2, 12))
    with torch.no_grad():
        expected = hf(input_ids=ids).logits
        got = ours(ids)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def _write_checkpoint(path, model: DecoderLM, **overrides) -> None:
    """A Qwen3-layout checkpoint written without transformers (pytorch_model.bin)."""
    cfg = model.cfg
    config = {
        "model_type": "qwen3",
        "hidden_size": cfg.dim,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_kv_heads,
        "intermediate_size": cfg.resolved_ffn_dim,
        "head_dim": cfg.head_dim,
        "rope_theta": cfg.rope_theta,
        "rms_norm_eps": 1e-6,
        "vocab_size": model.vocab_size,
        "tie_word_embeddings": False,
        "hidden_act": "silu",
    }
    config.update(overrides)
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(config))
    state = {
        (k if k == "lm_head.weight" else f"model.{k}"): v for k, v in model.state_dict().items()
    }
    torch.save(state, path / "pytorch_model.bin")


def _text_model(vocab: int = 45) -> DecoderLM:
    torch.manual_seed(0)
    cfg = LanguageModelConfig(dim=32, n_layers=2, n_heads=4, n_kv_heads=2, qk_norm=True)
    return DecoderLM(cfg, vocab)


@pytest.mark.parametrize("arch", ["joint_decoder", "cross_attention", "mot", "moma"])
def test_build_fusion_warm_starts_every_arch_from_a_qwen3_checkpoint(tmp_path, arch):
    text = _text_model()
    _write_checkpoint(tmp_path, text)
    lm = LanguageModelConfig(
        type="qwen3",
        checkpoint=str(tmp_path),
        dim=8,
        n_heads=2,
        n_kv_heads=1,
        n_layers=1,
        max_seq_len=96,
    )
    model = build_fusion(FusionConfig(arch=arch), lm, vocab_size=40)
    assert model.lm_cfg.dim == 32 and model.lm_cfg.n_layers == 2 and model.lm_cfg.max_seq_len == 96
    ids = torch.randint(0, 40, (2, 9))
    text_mask = torch.ones(2, 9, dtype=torch.bool)
    k = 0 if arch == "cross_attention" else 4
    zeros = torch.zeros(2, k, dtype=torch.long)
    visual = VisualTokens(
        torch.randn(2, k, 32),
        torch.zeros(2, k, dtype=torch.bool),
        zeros,
        zeros,
        num_frames=1,
        tokens_per_frame=k,
    )
    if arch == "cross_attention":  # zero-init blocks: exactly the text model
        visual = VisualTokens(
            torch.randn(2, 3, 32),
            torch.ones(2, 3, dtype=torch.bool),
            torch.zeros(2, 3, dtype=torch.long),
            torch.zeros(2, 3, dtype=torch.long),
            1,
            3,
        )
    with torch.no_grad():
        logits = model(visual, ids, text_mask).logits
        expected = text(ids)
    if arch == "moma":  # upcycled: every expert starts as the dense MLP, attention is shared
        sd = model.state_dict()
        for e in range(4):
            for m in ("visual", "text"):
                key = f"layers.1.mlp.groups.{m}.experts.{e}.down_proj.weight"
                assert torch.equal(sd[key], text.state_dict()["layers.1.mlp.down_proj.weight"])
        assert torch.equal(
            sd["layers.0.self_attn.q_proj.weight"],
            text.state_dict()["layers.0.self_attn.q_proj.weight"],
        )
    else:  # all visual tokens padded (or CA identity): the text model's logits
        torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)


def test_loader_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="not a directory"):
        load_qwen3(tmp_path / "missing")
    with pytest.raises(ValueError, match="no config.json"):
        load_qwen3(tmp_path)
    text = _text_model()
    _write_checkpoint(tmp_path / "llama", text, model_type="llama")
    with pytest.raises(ValueError, match="model_type='llama'"):
        load_qwen3(tmp_path / "llama")
    _write_checkpoint(tmp_path / "yarn", text, rope_scaling={"rope_type": "yarn", "factor": 4.0})
    with pytest.raises(ValueError, match="rope scaling"):
        load_qwen3(tmp_path / "yarn")
    _write_checkpoint(tmp_path / "eps", text, rms_norm_eps=1e-5)
    with pytest.raises(ValueError, match="rms_norm_eps"):
        load_qwen3(tmp_path / "eps")
    _write_checkpoint(tmp_path / "ok", text)
    lm = LanguageModelConfig(type="qwen3", checkpoint=str(tmp_path / "ok"))
    with pytest.raises(ValueError, match="tokenizer has 99 ids"):
        build_fusion(FusionConfig(), lm, vocab_size=99)


def test_tied_checkpoint_without_lm_head_copies_the_embedding(tmp_path):
    text = _text_model()
    _write_checkpoint(tmp_path, text, tie_word_embeddings=True)
    state = torch.load(tmp_path / "pytorch_model.bin", weights_only=True)
    del state["lm_head.weight"]
    torch.save(state, tmp_path / "pytorch_model.bin")
    loaded, _ = load_qwen3(tmp_path)
    assert torch.equal(loaded["lm_head.weight"], loaded["embed_tokens.weight"])
    (tmp_path / "config.json").write_text(
        (tmp_path / "config.json")
        .read_text()
        .replace('"tie_word_embeddings": true', '"tie_word_embeddings": false')
    )
    with pytest.raises(ValueError, match="lm_head.weight is missing"):
        load_qwen3(tmp_path)


TINY_VISION = {"hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2,
               "num_attention_heads": 4, "patch_size": 8}  # fmt: skip


def _siglip_encoder(path, frame_size: int, patch_size: int):
    """Our `vision.type=siglip2` encoder read from the local checkpoint at `path`."""
    from core.config import ExperimentConfig
    from core.models.vision import build_encoder

    cfg = ExperimentConfig.from_dict(
        {
            "data": {"frame_size": frame_size, "max_frames": 1, "min_frames": 1,
                     "pixel_mean": [0.5] * 3, "pixel_std": [0.5] * 3},
            "vision": {"type": "siglip2", "checkpoint": str(path), "patch_size": patch_size},
        }
    )  # fmt: skip
    return build_encoder(cfg.vision, cfg.data.frame_size).eval()


def _nontrivial_norms(model: torch.nn.Module) -> None:
    """Norm weights and biases away from 1 / 0, so a mis-mapped LayerNorm would show."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5) if name.endswith("weight") else p.uniform_(-0.2, 0.2)


def _saved_hf(path, model_class, config):
    """A seeded random HF model (non-trivial norms) saved at `path` with save_pretrained."""
    torch.manual_seed(0)
    model = model_class(config).eval()
    _nontrivial_norms(model)
    model.save_pretrained(path)
    return model


@pytest.mark.hf
def test_siglip2_encoder_is_a_vit_shaped_and_loaded_like_the_hf_tower(tmp_path):
    """vision.type=siglip2: the registered encoder reads a local SigLIP checkpoint's shape and
    weights; its patch features equal the HF vision tower's last hidden state."""
    transformers = pytest.importorskip("transformers")
    from core.config import ExperimentConfig
    from core.models.vision import ViT

    config = transformers.SiglipVisionConfig(**TINY_VISION, image_size=32)
    hf = _saved_hf(tmp_path, transformers.SiglipVisionModel, config)
    encoder = _siglip_encoder(tmp_path, 32, 8)
    assert isinstance(encoder, ViT) and encoder.dim == 32 and encoder.depth == 2
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = hf(pixel_values=pixels).last_hidden_state
        torch.testing.assert_close(encoder(pixels), expected, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match=r"data\.pixel_mean.*SigLIP"):
        ExperimentConfig.from_dict({"vision": {"type": "siglip2", "checkpoint": str(tmp_path)}})


@pytest.mark.hf
@pytest.mark.parametrize("frame_size", [32, 48])  # the checkpoint's 4×4 grid, and 6×6
def test_siglip_dual_tower_checkpoint_features_match_hf_vision_tower(tmp_path, frame_size):
    """The layout SigLIP2 so400m/14-384 ships in (a SiglipModel: text + vision towers, nested
    vision_config): our patch features equal HF's vision tower, at the checkpoint's resolution and
    at another one (HF: interpolate_pos_encoding=True)."""
    transformers = pytest.importorskip("transformers")
    vision = {**TINY_VISION, "image_size": 32}
    text = {"hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 1,
            "num_attention_heads": 2, "vocab_size": 50}  # fmt: skip
    config = transformers.SiglipConfig(text_config=text, vision_config=vision)
    hf = _saved_hf(tmp_path, transformers.SiglipModel, config)
    encoder = _siglip_encoder(tmp_path, frame_size, 8)
    assert encoder.depth == 2 and encoder.grid == frame_size // 8
    pixels = torch.randn(2, 3, frame_size, frame_size)
    with torch.no_grad():
        expected = hf.vision_model(
            pixel_values=pixels, interpolate_pos_encoding=frame_size != 32
        ).last_hidden_state
        torch.testing.assert_close(encoder(pixels), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.hf
@pytest.mark.parametrize("frame_size", [32, 48])  # the 4×4 position grid, and resized to 6×6
def test_siglip2_naflex_checkpoint_features_match_hf(tmp_path, frame_size):
    """A SigLIP2 NaFlex tower (Linear patch embedding over (p, p, C)-flattened patches, position
    grid resized bilinearly with antialias): our features on a square frame equal HF's on the same
    frame patchified, all patches valid."""
    transformers = pytest.importorskip("transformers")
    config = transformers.Siglip2VisionConfig(**TINY_VISION, num_patches=16)  # a 4×4 grid
    hf = _saved_hf(tmp_path, transformers.Siglip2VisionModel, config)
    encoder = _siglip_encoder(tmp_path, frame_size, 8)
    g, p = frame_size // 8, 8
    pixels = torch.randn(2, 3, frame_size, frame_size)
    patches = pixels.view(2, 3, g, p, g, p).permute(0, 2, 4, 3, 5, 1).reshape(2, g * g, p * p * 3)
    with torch.no_grad():
        expected = hf(
            pixel_values=patches,
            pixel_attention_mask=torch.ones(2, g * g, dtype=torch.long),
            spatial_shapes=torch.tensor([[g, g]] * 2),
        ).last_hidden_state
        torch.testing.assert_close(encoder(pixels), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.hf
def test_qwen3_bf16_sharded_tied_checkpoint_through_build_fusion_matches_hf_logits(tmp_path):
    """The path a user takes (lm.type=qwen3 → build_fusion): a bf16 checkpoint in several
    safetensors shards with tied embeddings, as Qwen3-4B ships; with no visual token the joint
    decoder's text logits equal HF's on the same (bf16-rounded) weights."""
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("safetensors")
    torch.manual_seed(0)
    hf_cfg = transformers.Qwen3Config(
        vocab_size=61, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=128,
        rope_theta=1_000_000.0, tie_word_embeddings=True,
    )  # fmt: skip
    hf = transformers.Qwen3ForCausalLM(hf_cfg).eval()
    _nontrivial_norms(hf)
    hf.to(torch.bfloat16).save_pretrained(tmp_path, max_shard_size="20KB")
    assert len(list(tmp_path.glob("*.safetensors"))) > 1
    lm = LanguageModelConfig(type="qwen3", checkpoint=str(tmp_path), max_seq_len=64)
    model = build_fusion(FusionConfig(arch="joint_decoder"), lm, vocab_size=61).eval()
    assert model.lm_cfg.rope_theta == 1_000_000.0 and model.lm_cfg.attn_head_dim == 16
    ids = torch.randint(0, 61, (2, 12))
    none = torch.zeros(2, 0, dtype=torch.long)
    visual = VisualTokens(torch.zeros(2, 0, 32), none.bool(), none, none, 1, 0)
    with torch.no_grad():
        expected = hf.float()(input_ids=ids).logits
        got = model(visual, ids, torch.ones(2, 12, dtype=torch.bool)).logits
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
