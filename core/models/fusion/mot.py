"""`mot`: Mixture-of-Transformers (arXiv 2411.04996, Algorithm 1).

Every non-embedding parameter is duplicated per modality in `nn.ModuleDict`s keyed "visual"/"text":
attention-input norm, q/k/v/o projections (+ qk norms), FFN norm, FFN, and the final norm. Token
embedding, LM head and the attention computation itself are shared: Q/K/V are projected per
modality and concatenated, ONE global attention runs over [visual | text] with ONE continuous RoPE
position axis (positions do not restart per modality) and JD's causal + key-padding mask, and the
result is split back through each modality's `o_proj`. Each modality's parameters are laid out as a
DecoderBlock, so a text decoder's block can warm-start either copy by `load_state_dict`. An in-LLM
drop shortens the visual stream (and its RoPE positions) for the later layers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from core.extensions import Display, TokenFlow
from core.models.attention import AttentionProbe, RMSNorm, Rope, RotaryEmbedding, attend
from core.models.fusion.base import (
    MODALITIES,
    DropRun,
    FusionModel,
    FusionOutput,
    residual_decoder_flops,
    split_rope,
    take,
)
from core.models.language_model import NORM_EPS, DecoderBlock, init_weights
from core.registry import FUSION_ARCHS

if TYPE_CHECKING:
    from core.config.experiment import ExperimentConfig
    from core.config.fusion import FusionConfig
    from core.config.language_model import LanguageModelConfig
    from core.models.visual_tokens import VisualTokens


class MoTBlock(nn.Module):
    """One MoT layer: per-modality DecoderBlock parameters around a shared global attention."""

    def __init__(self, cfg: LanguageModelConfig) -> None:
        super().__init__()
        self.experts = nn.ModuleDict({m: DecoderBlock(cfg) for m in MODALITIES})

    def forward(
        self,
        streams: dict[str, torch.Tensor],
        rope: dict[str, Rope],
        mask: torch.Tensor | None,
        probe: AttentionProbe | None = None,
    ) -> dict[str, torch.Tensor]:
        qs, ks, vs = [], [], []
        for m in MODALITIES:
            blk = self.experts[m]
            x = blk.input_layernorm(streams[m])
            qs.append(blk.self_attn.project_q(x, rope[m]))
            k, v = blk.self_attn.project_kv(x, rope[m])
            ks.append(k)
            vs.append(v)
        q, k = torch.cat(qs, 2), torch.cat(ks, 2)
        if probe is not None:
            probe.record(q, k)
        ctx = attend(q, k, torch.cat(vs, 2), mask, causal=True)
        ctx_by_mod = dict(
            zip(MODALITIES, ctx.split([s.shape[1] for s in streams.values()], 1), strict=True)
        )
        out = {}
        for m in MODALITIES:
            blk = self.experts[m]
            h = streams[m] + blk.self_attn.o_proj(ctx_by_mod[m])
            out[m] = h + blk.mlp(blk.post_attention_layernorm(h))
        return out


@FUSION_ARCHS.register("mot")
class MixtureOfTransformers(FusionModel):
    arch = "mot"
    display = Display(label="MoT", short="mot", order=20)
    residual_visual = True

    def __init__(self, fusion: FusionConfig, lm: LanguageModelConfig, vocab_size: int) -> None:
        super().__init__(fusion, lm, vocab_size)
        self.embed_tokens = nn.Embedding(vocab_size, lm.dim)
        self.rotary = RotaryEmbedding(lm.head_dim, lm.rope_theta)
        self.layers = nn.ModuleList(MoTBlock(lm) for _ in range(lm.n_layers))
        self.norm = nn.ModuleDict({m: RMSNorm(lm.dim, NORM_EPS) for m in MODALITIES})
        self.lm_head = nn.Linear(lm.dim, vocab_size, bias=False)
        init_weights(self)

    @classmethod
    def flops(cls, cfg: ExperimentConfig, flow: TokenFlow) -> int:
        """Each token runs through its modality's copy of JD-sized weights and one global
        attention over [visual | text], so it costs what joint_decoder does:
        `residual_decoder_flops`."""
        return residual_decoder_flops(cfg, flow)

    def decoder_key_targets(self, key: str) -> list[str]:
        """Warm start: a text block initialises both modality copies (so does the final norm)."""
        if key.startswith("layers."):
            i, rest = key.removeprefix("layers.").split(".", 1)
            return [f"layers.{i}.experts.{m}.{rest}" for m in MODALITIES]
        if key.startswith("norm."):
            return [f"norm.{m}.{key.removeprefix('norm.')}" for m in MODALITIES]
        return [key]

    def parameter_group(self, name: str) -> str:
        return "vision_adapters" if ".visual." in f".{name}" else "lm"

    def fuse(
        self, visual: VisualTokens, input_ids: torch.Tensor, text_mask: torch.Tensor, run: DropRun
    ) -> FusionOutput:
        text = self.embed_tokens(input_ids)
        streams = {"visual": visual.features.to(text.dtype), "text": text}
        rope, mask = self._rope(run), run.mask()
        for i, layer in enumerate(self.layers):
            probe = run.probe(i)
            streams = layer(streams, rope, mask, probe)
            sel = run.cut(i, probe)
            if sel is not None:
                streams["visual"] = take(streams["visual"], sel)
                rope, mask = self._rope(run), run.mask()
        logits = self.lm_head(self.norm["text"](streams["text"]))
        return FusionOutput(logits=logits, **run.kept())

    def _rope(self, run: DropRun) -> dict[str, Rope]:
        visual, text = split_rope(run.rope(self.rotary), run.n_visual)
        return {"visual": visual, "text": text}
