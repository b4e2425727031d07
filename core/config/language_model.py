"""Language model section: our small decoder (RMSNorm, RoPE, GQA, SwiGLU) or a local Qwen3."""

from __future__ import annotations

from dataclasses import dataclass

from core.config._build import fail

LM_TYPES = ("decoder", "qwen3")


@dataclass
class LanguageModelConfig:
    type: str = "decoder"
    dim: int = 96
    n_layers: int = 2
    n_heads: int = 4
    n_kv_heads: int = 2
    ffn_dim: int = 0  # 0 → 8/3·dim rounded up to a multiple of 16
    attn_head_dim: int = 0  # 0 → dim // n_heads (Qwen3-0.6B/4B set 128 explicitly)
    max_seq_len: int = 256
    rope_theta: float = 10000.0
    qk_norm: bool = False
    vocab_size: int = 0  # 0 → the tokenizer's size
    checkpoint: str = ""
    tokenizer: str = ""  # empty → word-level tokenizer built from the data

    def __post_init__(self) -> None:
        if self.type not in LM_TYPES:
            fail("lm.type", self.type, "unknown language model", f"use one of {LM_TYPES}")
        if self.type == "qwen3" and not self.checkpoint:
            fail(
                "lm.checkpoint",
                self.checkpoint,
                "qwen3 needs a local checkpoint directory",
                "set lm.checkpoint=/path/to/Qwen3 (no downloads happen at run time)",
            )
        if self.attn_head_dim < 0:
            fail("lm.attn_head_dim", self.attn_head_dim, "must be ≥ 0", "use 0 for dim // n_heads")
        if self.n_heads < 1 or (not self.attn_head_dim and self.dim % self.n_heads):
            fail("lm.n_heads", self.n_heads, f"must divide lm.dim={self.dim}", "pick a divisor")
        if self.n_kv_heads < 1 or self.n_heads % self.n_kv_heads:
            fail(
                "lm.n_kv_heads",
                self.n_kv_heads,
                f"must divide lm.n_heads={self.n_heads}",
                "pick a divisor of n_heads",
            )
        if self.n_layers < 1:
            fail("lm.n_layers", self.n_layers, "must be ≥ 1", "use e.g. 3")
        if self.max_seq_len < 2:
            fail("lm.max_seq_len", self.max_seq_len, "must be ≥ 2", "use e.g. 256")

    @property
    def head_dim(self) -> int:
        return self.attn_head_dim or self.dim // self.n_heads

    @property
    def resolved_ffn_dim(self) -> int:
        if self.ffn_dim:
            return self.ffn_dim
        return ((int(self.dim * 8 / 3) + 15) // 16) * 16
