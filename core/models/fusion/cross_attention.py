"""`cross_attention` (Flamingo / Llama-3.2-Vision style): text residual, visual K/V.

The residual carries text only (causal, is_causal fast path). After every
`fusion.cross_attention.every`-th text block a CrossAttentionBlock adds
`o_proj(attn(norm(h) → visual K/V))` and then its own pre-norm SwiGLU. Visual keys get no RoPE and
no causal mask; padded visual tokens are masked with a (B, 1, 1, K) boolean key mask. `o_proj` and
the MLP `down_proj` are zero-initialised, so every block is the identity at construction and a fresh
model reproduces the text-only decoder exactly.

An in-LLM drop before layer l prunes the visual K/V: the last cross-attention block before l ranks
the visual tokens by the probing text query's cross-attention, and the blocks after layers ≥ l read
only the kept ones. A drop with no block before it to rank, or none after it to save, is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from core.config._build import fail
from core.extensions import Display, TokenFlow
from core.models.attention import AttentionProbe, RMSNorm, SwiGLU, attend
from core.models.fusion.base import DropRun, FusionModel, FusionOutput, take
from core.models.language_model import (
    NORM_EPS,
    DecoderBlock,
    DecoderLM,
    attention_flops,
    init_weights,
    make_attention,
)
from core.registry import FUSION_ARCHS

if TYPE_CHECKING:
    from core.config.experiment import ExperimentConfig
    from core.config.fusion import FusionConfig
    from core.config.language_model import LanguageModelConfig
    from core.models.visual_tokens import VisualTokens


@dataclass
class CrossAttentionConfig:
    """`fusion.cross_attention.*`."""

    every: int = 1  # a cross-attention block after every `every`-th text block

    def check(self, path: str) -> None:
        if self.every < 1:
            fail(
                f"{path}.every",
                self.every,
                "must be ≥ 1",
                "use 1 for a cross-attention block after every layer",
            )

    def layers(self, n_layers: int) -> list[int]:
        """Indices of the text blocks a cross-attention block follows."""
        return [i for i in range(n_layers) if (i + 1) % self.every == 0]


class CrossAttentionBlock(nn.Module):
    """h + o(attn(norm(h), visual)), then h + mlp(norm(h)); identity at init."""

    def __init__(self, cfg: LanguageModelConfig) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.dim, NORM_EPS)
        self.cross_attn = make_attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.dim, NORM_EPS)
        self.mlp = SwiGLU(cfg.dim, cfg.resolved_ffn_dim)
        init_weights(self)
        nn.init.zeros_(self.cross_attn.o_proj.weight)
        nn.init.zeros_(self.mlp.down_proj.weight)

    @staticmethod
    def flops(cfg: LanguageModelConfig, text: int, visual: int) -> int:
        """T text queries over K visual keys (`Attention.flops`) plus the SwiGLU on the text."""
        return attention_flops(cfg, text, visual) + SwiGLU.flops(
            cfg.dim, cfg.resolved_ffn_dim, text
        )

    def forward(
        self,
        h: torch.Tensor,
        visual: torch.Tensor,
        key_mask: torch.Tensor,
        has_key: torch.Tensor,
        probe: AttentionProbe | None = None,
    ) -> torch.Tensor:
        """h (B, T, D); visual (B, K, D); key_mask (B, 1, 1, K) NaN-guarded; has_key (B, 1, 1)."""
        q = self.cross_attn.project_q(self.input_layernorm(h), None)
        k, v = self.cross_attn.project_kv(visual, None)
        if probe is not None:
            probe.record(q, k)
        ctx = attend(q, k, v, key_mask, causal=False)
        # A clip with no valid token contributes exactly nothing (its guarded attention is dropped).
        ctx = torch.where(has_key, ctx, torch.zeros_like(ctx))
        h = h + self.cross_attn.o_proj(ctx)
        return h + self.mlp(self.post_attention_layernorm(h))


@FUSION_ARCHS.register("cross_attention")
class CrossAttentionFusion(FusionModel):
    arch = "cross_attention"
    Config = CrossAttentionConfig
    display = Display(label="cross-attention", short="xattn", order=10)
    residual_visual = False

    def __init__(self, fusion: FusionConfig, lm: LanguageModelConfig, vocab_size: int) -> None:
        super().__init__(fusion, lm, vocab_size)
        self.lm = DecoderLM(lm, vocab_size)
        # Keyed by the index of the text block they follow, so state-dict names stay stable.
        self.cross_blocks = nn.ModuleDict(
            {str(i): CrossAttentionBlock(lm) for i in self.options.layers(lm.n_layers)}
        )

    @classmethod
    def flops(cls, cfg: ExperimentConfig, flow: TokenFlow) -> int:
        """The text-only decoder (`DecoderBlock.flops` on T tokens per layer), the cross-attention
        blocks after the layers `fusion.cross_attention.every` picks (K = that layer's visual
        tokens, in K/V only) and the LM head."""
        lm, t = cfg.lm, flow.text_len
        text = sum(DecoderBlock.flops(lm, t) for _ in flow.llm_visual)
        cross = sum(
            CrossAttentionBlock.flops(lm, t, flow.llm_visual[i])
            for i in cfg.fusion.options.layers(len(flow.llm_visual))
        )
        return text + cross + DecoderLM.head_flops(lm, t, flow.vocab)

    @classmethod
    def probe_layer(cls, fusion: FusionConfig, n_layers: int, drop_layer: int) -> int | None:
        """The last cross-attention block before `drop_layer` ranks the visual tokens."""
        before = [i for i in fusion.options.layers(n_layers) if i < drop_layer]
        return before[-1] if before else None

    @classmethod
    def probe_keys(cls, cfg: ExperimentConfig, flow: TokenFlow, layer: int) -> int:
        """The text query's cross-attention row spans that block's visual keys only."""
        return flow.llm_visual[layer]

    @classmethod
    def drop_refusal(cls, cfg: ExperimentConfig, drop_layer: int) -> tuple[str, str] | None:
        blocks = cfg.fusion.options.layers(cfg.lm.n_layers)
        every = cfg.fusion.options.every
        if not any(i < drop_layer for i in blocks):
            return (
                f"no cross-attention block before LLM layer {drop_layer} can rank the visual "
                f"tokens (blocks follow layers {blocks}, fusion.cross_attention.every={every})",
                "lower fusion.cross_attention.every",
            )
        if not any(i >= drop_layer for i in blocks):
            return (
                f"no cross-attention block at or after LLM layer {drop_layer} reads the visual "
                f"tokens (blocks follow layers {blocks}), so the drop saves nothing",
                "lower fusion.cross_attention.every",
            )
        return None

    def decoder_key_targets(self, key: str) -> list[str]:
        return [f"lm.{key}"]

    def parameter_group(self, name: str) -> str:
        return "vision_adapters" if name.startswith("cross_blocks.") else "lm"

    def fuse(
        self, visual: VisualTokens, input_ids: torch.Tensor, text_mask: torch.Tensor, run: DropRun
    ) -> FusionOutput:
        h = self.lm.embed_tokens(input_ids)
        feats = visual.features.to(h.dtype)
        key_mask, has_key = _key_mask(run.valid)
        rope = self.lm.rotary(torch.arange(input_ids.shape[1], device=h.device))
        for i, layer in enumerate(self.lm.layers):
            h = layer(h, rope, None)
            if str(i) in self.cross_blocks:
                probe = run.probe(i)
                h = self.cross_blocks[str(i)](h, feats, key_mask, has_key, probe)
                sel = run.cut(i, probe)
                if sel is not None:
                    feats = take(feats, sel)
                    key_mask, has_key = _key_mask(run.valid)
        return FusionOutput(logits=self.lm.lm_head(self.lm.norm(h)), **run.kept())


def _key_mask(valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """valid (B, K) → (key_mask (B, 1, 1, K) NaN-guarded, has_key (B, 1, 1)): a clip with no
    valid token attends to all its (ignored) keys, and `has_key` drops its result."""
    has_key = valid.any(dim=1)[:, None, None]
    return (valid[:, None, :] | ~has_key)[:, None], has_key
