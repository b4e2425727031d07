"""Our small decoder-only language model; its blocks are reused by the fusion archs.

Layout (state-dict names mirror Qwen3's `model.*` so a checkpoint maps by dropping the prefix):
`embed_tokens`, `layers.{i}.{input_layernorm, self_attn.{q,k,v,o}_proj, self_attn.{q,k}_norm,
post_attention_layernorm, mlp.{gate,up,down}_proj}`, `norm`, `lm_head`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from core.models.attention import (
    Attention,
    AttentionProbe,
    RMSNorm,
    Rope,
    RotaryEmbedding,
    SwiGLU,
)

if TYPE_CHECKING:
    from core.config.language_model import LanguageModelConfig

NORM_EPS = 1e-6
INIT_STD = 0.02


def make_attention(cfg: LanguageModelConfig) -> Attention:
    return Attention(cfg.dim, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.qk_norm, NORM_EPS)


def attention_flops(cfg: LanguageModelConfig, queries: int, keys: int) -> int:
    """`Attention.flops` of `make_attention(cfg)`."""
    return Attention.flops(cfg.dim, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, queries, keys)


class DecoderBlock(nn.Module):
    """Pre-norm block: h + attn(norm(h)), then h + mlp(norm(h))."""

    def __init__(self, cfg: LanguageModelConfig) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.dim, NORM_EPS)
        self.self_attn = make_attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.dim, NORM_EPS)
        self.mlp = SwiGLU(cfg.dim, cfg.resolved_ffn_dim)

    @staticmethod
    def flops(cfg: LanguageModelConfig, tokens: int) -> int:
        """Causal self-attention over `tokens` plus the SwiGLU (norms and RoPE not counted)."""
        return attention_flops(cfg, tokens, tokens) + SwiGLU.flops(
            cfg.dim, cfg.resolved_ffn_dim, tokens
        )

    def forward(
        self,
        h: torch.Tensor,
        rope: Rope,
        mask: torch.Tensor | None,
        probe: AttentionProbe | None = None,
    ) -> torch.Tensor:
        h = h + self.self_attn(self.input_layernorm(h), rope, mask, probe)
        return h + self.mlp(self.post_attention_layernorm(h))


def init_weights(module: nn.Module, std: float = INIT_STD) -> None:
    """Normal(0, std) for every Linear/Embedding weight; norms keep their ones."""
    for m in module.modules():
        if isinstance(m, nn.Linear | nn.Embedding):
            nn.init.normal_(m.weight, std=std)


class DecoderLM(nn.Module):
    """Token embedding → N DecoderBlocks (RoPE, GQA, SwiGLU) → final RMSNorm → LM head."""

    def __init__(
        self, cfg: LanguageModelConfig, vocab_size: int, tie_embeddings: bool = False
    ) -> None:
        super().__init__()
        if vocab_size < 1:
            raise ValueError(f"vocab_size={vocab_size}: must be ≥ 1. Fix: pass the tokenizer size.")
        self.cfg = cfg
        self.vocab_size = vocab_size
        self.embed_tokens = nn.Embedding(vocab_size, cfg.dim)
        self.rotary = RotaryEmbedding(cfg.head_dim, cfg.rope_theta)
        self.layers = nn.ModuleList(DecoderBlock(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim, NORM_EPS)
        self.lm_head = nn.Linear(cfg.dim, vocab_size, bias=False)
        init_weights(self)
        if tie_embeddings:
            self.lm_head.weight = self.embed_tokens.weight

    @staticmethod
    def head_flops(cfg: LanguageModelConfig, text_len: int, vocab: int) -> int:
        """The LM head on text positions only: 2·T·d·V."""
        return 2 * text_len * cfg.dim * vocab

    def run_layers(self, h: torch.Tensor, rope: Rope, mask: torch.Tensor | None) -> torch.Tensor:
        for layer in self.layers:
            h = layer(h, rope, mask)
        return h

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Text-only causal LM: (B, T) ids → (B, T, V) next-token logits."""
        t = input_ids.shape[1]
        if t > self.cfg.max_seq_len:
            raise ValueError(
                f"sequence of {t} tokens exceeds lm.max_seq_len={self.cfg.max_seq_len}"
            )
        rope = self.rotary(torch.arange(t, device=input_ids.device))
        h = self.run_layers(self.embed_tokens(input_ids), rope, None)
        return self.lm_head(self.norm(h))
