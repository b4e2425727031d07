"""Load a local Qwen3 (HF layout) checkpoint into our decoder's parameter names.

Reads `config.json` and the weights directly (`*.safetensors`, sharded or not, via the lazily
imported `safetensors`; else `pytorch_model*.bin` with `weights_only=True`), so transformers is not
needed and nothing is downloaded. HF names map to ours by dropping the `model.` prefix; a tied LM
head is materialised as a copy of the embedding. Features our decoder does not implement (rope
scaling, sliding window, attention bias, another activation or norm eps) raise instead of loading
a silently different model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from core.models.language_model import NORM_EPS


def _fail(path: Path, problem: str) -> None:
    raise ValueError(f"lm.checkpoint={str(path)!r}: {problem}")


def _read_config(path: Path) -> dict[str, Any]:
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        _fail(
            path,
            "no config.json found. Fix: point lm.checkpoint at a local Qwen3 directory "
            "(saved with save_pretrained).",
        )
    cfg = json.loads(cfg_file.read_text())
    if cfg.get("model_type") != "qwen3":
        _fail(path, f"model_type={cfg.get('model_type')!r}, expected 'qwen3'.")
    return cfg


def _rope_theta(path: Path, cfg: dict[str, Any]) -> float:
    params = cfg.get("rope_parameters") or {}
    scaling = cfg.get("rope_scaling")
    rope_type = params.get("rope_type", "default")
    if scaling or rope_type != "default":
        _fail(path, f"rope scaling {scaling or rope_type!r} is not supported by our decoder.")
    return float(params.get("rope_theta", cfg.get("rope_theta", 10000.0)))


def qwen3_lm_fields(path: str | Path) -> dict[str, Any]:
    """LanguageModelConfig fields describing the checkpoint's architecture (not max_seq_len)."""
    path = Path(path)
    cfg = _read_config(path)
    if cfg.get("hidden_act", "silu") != "silu":
        _fail(path, f"hidden_act={cfg['hidden_act']!r}; our SwiGLU uses silu.")
    if cfg.get("attention_bias", False):
        _fail(path, "attention_bias=true is not supported (our projections have no bias).")
    if cfg.get("use_sliding_window", False):
        _fail(path, "use_sliding_window=true is not supported.")
    if abs(float(cfg.get("rms_norm_eps", NORM_EPS)) - NORM_EPS) > 1e-12:
        _fail(path, f"rms_norm_eps={cfg['rms_norm_eps']} but our RMSNorm uses {NORM_EPS}.")
    dim, n_heads = int(cfg["hidden_size"]), int(cfg["num_attention_heads"])
    head_dim = int(cfg.get("head_dim") or dim // n_heads)
    return {
        "dim": dim,
        "n_layers": int(cfg["num_hidden_layers"]),
        "n_heads": n_heads,
        "n_kv_heads": int(cfg.get("num_key_value_heads") or n_heads),
        "ffn_dim": int(cfg["intermediate_size"]),
        "attn_head_dim": 0 if head_dim * n_heads == dim else head_dim,
        "rope_theta": _rope_theta(path, cfg),
        "qk_norm": True,
        "vocab_size": int(cfg["vocab_size"]),
    }


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    shards = sorted(path.glob("*.safetensors"))
    if shards:
        try:
            from safetensors.torch import load_file
        except ImportError as exc:
            raise ImportError(
                "reading *.safetensors needs the `safetensors` package. Fix: "
                "pip install 'vidprune[hf]'."
            ) from exc
        state: dict[str, torch.Tensor] = {}
        for shard in shards:
            state.update(load_file(str(shard)))
        return state
    bins = sorted(path.glob("pytorch_model*.bin"))
    if not bins:
        _fail(path, "no *.safetensors or pytorch_model*.bin weights found.")
    state = {}
    for shard in bins:
        state.update(torch.load(shard, map_location="cpu", weights_only=True))
    return state


def load_qwen3(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state dict in DecoderLM names, LanguageModelConfig fields) from a local Qwen3 checkpoint."""
    path = Path(path)
    if not path.is_dir():
        _fail(
            path,
            "not a directory. Fix: set lm.checkpoint to a local Qwen3 directory; "
            "nothing is downloaded at run time.",
        )
    fields = qwen3_lm_fields(path)
    tied = bool(_read_config(path).get("tie_word_embeddings", False))
    state = {}
    for name, tensor in _read_weights(path).items():
        if name.startswith("model."):
            state[name.removeprefix("model.")] = tensor
        elif name == "lm_head.weight":
            state[name] = tensor
        else:
            _fail(path, f"unexpected weight {name!r} for a Qwen3ForCausalLM checkpoint.")
    if "lm_head.weight" not in state:
        if not tied:
            _fail(path, "lm_head.weight is missing and tie_word_embeddings is false.")
        state["lm_head.weight"] = state["embed_tokens.weight"].clone()
    return state, fields
