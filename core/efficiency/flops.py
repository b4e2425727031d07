"""Analytic forward FLOPs of one clip for any ExperimentConfig: a sum over its components.

Conventions: one multiply-add = 2 FLOPs; only matrix products are counted (norms, activations,
softmax, pooling adds, cosine similarities' normalisation, RoPE, biases and residual adds are
ignored); attention is counted in full (QKᵀ and AV over every query-key pair, no halving for causal
masks). Numbers are per clip, batch 1, no padding, in GFLOPs (1e9 FLOPs).

The selected reducer first gives the `TokenFlow` (core.extensions): which tokens each encoder block,
the connector and each LLM layer see (kept visual tokens from core.budget, the single source of
truth). Each component then prices its share with its own `flops(cfg, flow)`, where its formula is
documented: the vision encoder (`ViT.flops`, `ViTBlock.flops`; `RandomEncoder.flops`), the reducer's
scoring (e.g. `STTSScorer.flops`; it runs only when some token is removed), the connector
(`AvgPoolConnector.flops`, `AttentionalPoolConnector.flops`) and the fusion arch's LLM
(`JointDecoder.flops`, `CrossAttentionFusion.flops`, `MixtureOfTransformers.flops`, `MoMa.flops`,
built from `Attention.flops`, `SwiGLU.flops`, `DecoderBlock.flops`). Every registered extension has
a cost (the registries refuse one without), so nothing is silently free.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from core.registry import CONNECTORS, FUSION_ARCHS, REDUCERS, VISION_ENCODERS

if TYPE_CHECKING:
    from core.config import ExperimentConfig

GIGA = 1e9
DEFAULT_VOCAB = 1000


@dataclass
class FlopsBreakdown:
    """Per-clip forward GFLOPs by part; `vit` includes `patch_embed` and every `vit_blocks` entry;
    `reducer` is the reducer's scoring cost."""

    vit_blocks: list[float] = field(default_factory=list)
    patch_embed: float = 0.0
    vit: float = 0.0
    reducer: float = 0.0
    connector: float = 0.0
    llm: float = 0.0
    total: float = 0.0
    vision_tokens_llm: int = 0
    vision_tokens_full: int = 0
    frames: int = 0
    text_len: int = 0
    vit_tokens_per_block: list[int] = field(default_factory=list)
    vision_tokens_final: int = 0  # in the last LLM layer (fewer than at its input after drops)
    llm_kept_fraction: float = 0.0  # visual tokens per LLM layer, layer-averaged, / full

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def analytic_flops(
    cfg: ExperimentConfig,
    frames: int | None = None,
    text_len: int | None = None,
    kept_per_frame: list[int] | None = None,
    vocab_size: int | None = None,
) -> FlopsBreakdown:
    """Forward GFLOPs of one clip: encoder + reducer scoring + connector + fusion-arch LLM.

    Defaults: frames = data.max_frames, text_len = data.max_text_len, vocab = `vocab_size`, else
    lm.vocab_size, else 1000. `kept_per_frame` (kept patches per frame, e.g. from a real keep mask)
    sets the Σ n_f² attention term of the blocks after the reducer's hard removal."""
    f = cfg.data.max_frames if frames is None else int(frames)
    t = cfg.data.max_text_len if text_len is None else int(text_len)
    if f < 1 or t < 0:
        raise ValueError(f"frames={f}, text_len={t}: need frames ≥ 1 and text_len ≥ 0")
    vocab = vocab_size or cfg.lm.vocab_size or DEFAULT_VOCAB
    reducer = REDUCERS.get(cfg.pruning.method)
    flow = reducer.token_flow(cfg, f, t, vocab, kept_per_frame)
    encoder = VISION_ENCODERS.get(cfg.vision.type).flops(cfg, flow)
    scoring = reducer.flops(cfg, flow) if flow.reduced else 0
    connector = CONNECTORS.get(cfg.connector.type).flops(cfg, flow)
    llm = FUSION_ARCHS.get(cfg.fusion.arch).flops(cfg, flow)
    vit = encoder.patch_embed + sum(encoder.blocks)
    return FlopsBreakdown(
        vit_blocks=[x / GIGA for x in encoder.blocks],
        patch_embed=encoder.patch_embed / GIGA,
        vit=vit / GIGA,
        reducer=scoring / GIGA,
        connector=connector / GIGA,
        llm=llm / GIGA,
        total=(vit + scoring + connector + llm) / GIGA,
        vision_tokens_llm=flow.llm_visual[0] if flow.llm_visual else flow.connector_tokens,
        vision_tokens_full=flow.full_tokens,
        frames=f,
        text_len=t,
        vit_tokens_per_block=[sum(tokens) for tokens in flow.vit_blocks],
        vision_tokens_final=flow.llm_visual[-1] if flow.llm_visual else flow.connector_tokens,
        llm_kept_fraction=flow.llm_kept_fraction,
    )
