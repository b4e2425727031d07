"""Analytic forward FLOPs of one clip for any ExperimentConfig.

Conventions: one multiply-add = 2 FLOPs; only matrix products are counted (norms, activations,
softmax, pooling adds, RoPE, biases and residual adds are ignored); attention is counted in full
(QKᵀ and AV over every query-key pair, no halving for causal masks). Numbers are per clip, batch 1,
no padding, in GFLOPs (1e9 FLOPs).

Symbols: F frames; grid = frame_size/patch_size; N = grid² patches per frame; ViT width D, MLP width
M, depth; window w; P′ windows (LLM tokens) per frame; K kept visual tokens (core.budget, the single
source of truth); T text tokens; LM width d, head dim d_h, kv heads h_kv, SwiGLU width m, L layers,
vocabulary V.

ViT (per frame, attention stays within a frame): patch embedding 2·N·3p²·D on every patch; a block on
n tokens costs 8nD² (q, k, v, o) + 4n²D (attention) + 4nDM (MLP). With in-ViT pruning the first
`prune_at + 1 + hard_prune_delay` blocks see all patches (STTS: prune_at + 2; the other methods:
prune_at + 1) and later blocks see only the kept patches, K·w² in all (divisible grid). How they are
spread over frames sets the Σ n_f² attention term: `kept_per_frame` gives it; by default the kept
windows are spread as evenly as integers allow over the frames (the real split is data-dependent).
The weightless `random` encoder has no blocks; its fixed patch projection costs the patch embedding.

Reducer scoring (per frame, on all P′ windows): STTS pooler q 2P′D² (on window means), k, v 4ND²,
attention 4P′w²D, o 2P′D², MLP 2D→H→H→1: 2P′(2D·H + H·H + H), H = scorer_hidden or M. easy,
heuristic and oracle: one cosine pass between w²·D window vectors, 2P′w²D (easy's threshold retries
repeat it on rare clips; not counted). random and none: 0.

Connector, per window that reaches the LLM (padded slots of ragged windows are computed too, so w²
is used throughout): avgpool 2Dd; attentional_pool 2D² (q) + 4w²D² (k, v) + 4w²D (attention) + 2D²
(o) + 2Dd (projection).

LLM prefill on S residual tokens (joint_decoder, mot, moma: S = K + T; cross_attention: S = T), per
layer 4Sd² (q, o) + 4S·d·h_kv·d_h (k, v) + 4S²d (attention) + 6Sdm (SwiGLU); LM head 2TdV on text
positions only. cross_attention adds L // cross_attention_every blocks of 4Td² + 4K·d·h_kv·d_h +
4TKd + 6Tdm. moma replaces each SwiGLU by expert-choice experts per modality group: each of the E
experts of a group with N_m tokens processes min(N_m, max(1, ceil(c·N_m))) tokens (c =
moma_capacity or 1/E, exact arithmetic as in the model) at 6dm per token, plus a router 2·N_m·d·E
(the training-time routing; eval-time routers pick a data-dependent count). mot has per-modality
weights of the JD sizes, so it costs the same as joint_decoder.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from core import budget

if TYPE_CHECKING:
    from core.config import ExperimentConfig

GIGA = 1e9
DEFAULT_VOCAB = 1000
SIMILARITY_METHODS = ("easy", "heuristic", "oracle")


@dataclass
class FlopsBreakdown:
    """Per-clip forward GFLOPs by part; `vit` includes `patch_embed` and every `vit_blocks` entry."""

    vit_blocks: list[float] = field(default_factory=list)
    patch_embed: float = 0.0
    vit: float = 0.0
    scorer: float = 0.0
    connector: float = 0.0
    llm: float = 0.0
    total: float = 0.0
    vision_tokens_llm: int = 0
    vision_tokens_full: int = 0
    frames: int = 0
    text_len: int = 0
    vit_tokens_per_block: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---- parts (FLOPs, not GFLOPs) -------------------------------------------------------------
def vit_block_flops(tokens_per_frame: list[int], dim: int, mlp_dim: int) -> int:
    """One ViT block over frames holding n_f tokens each: Σ_f 8n_fD² + 4n_f²D + 4n_fDM."""
    return sum(
        8 * n * dim * dim + 4 * n * n * dim + 4 * n * dim * mlp_dim for n in tokens_per_frame
    )


def stts_scorer_flops(
    frames: int, windows: int, window: int, patches: int, dim: int, hidden: int
) -> int:
    per_frame = (
        2 * windows * dim * dim  # q on window means
        + 4 * patches * dim * dim  # k, v on all patches
        + 4 * windows * window**2 * dim  # attention of one query over w² keys
        + 2 * windows * dim * dim  # o
        + 2 * windows * (2 * dim * hidden + hidden * hidden + hidden)  # MLP 2D→H→H→1
    )
    return frames * per_frame


def connector_flops(kind: str, tokens: int, window: int, dim: int, lm_dim: int) -> int:
    if kind == "avgpool":
        return tokens * 2 * dim * lm_dim
    if kind == "attentional_pool":
        s = window**2
        per = 2 * dim * dim + 4 * s * dim * dim + 4 * s * dim + 2 * dim * dim + 2 * dim * lm_dim
        return tokens * per
    raise ValueError(
        f"connector.type={kind!r}: no analytic FLOPs model. Fix: add it to core/efficiency/flops.py."
    )


def moe_capacity(n_tokens: int, capacity: Fraction) -> int:
    """Tokens each expert-choice expert takes from a group of n_tokens (as core.models.fusion.moma)."""
    if n_tokens <= 0:
        return 0
    return min(n_tokens, max(1, math.ceil(capacity * n_tokens)))


def _kept_layout(frames: int, kept_windows: int, per_window: int) -> list[int]:
    base, extra = divmod(kept_windows, frames)
    return [(base + (1 if f < extra else 0)) * per_window for f in range(frames)]


def _vit_tokens(
    cfg: ExperimentConfig, frames: int, kept: int, kept_per_frame: list[int] | None
) -> tuple[list[list[int]], int]:
    """Per block, the tokens of each frame; plus the number of blocks that see every patch."""
    from core.registry import REDUCERS

    v, c, p = cfg.vision, cfg.connector, cfg.pruning
    depth = 0 if v.type == "random" else v.depth
    grid = cfg.grid
    n = grid * grid
    full = frames * cfg.tokens_per_frame
    pruned = p.method != "none" and kept < full
    if kept_per_frame is not None and not pruned:
        raise ValueError(
            "kept_per_frame was given but nothing is pruned (pruning.method=none, ratio 0 or one "
            "frame). Fix: leave kept_per_frame unset."
        )
    if not pruned:
        return [[n] * frames for _ in range(depth)], depth
    reducer = REDUCERS.get(p.method)
    stage = str(getattr(reducer, "stage", "in_vit"))
    if stage != "in_vit":
        raise ValueError(
            f"pruning.method={p.method} acts at stage {stage!r}; the analytic model covers in-ViT "
            "reducers only. Fix: extend core/efficiency/flops.py for that stage."
        )
    n_full = min(depth, p.prune_at + 1 + int(getattr(reducer, "hard_prune_delay", 0)))
    if grid % c.window == 0:
        kept_patches = kept * c.window**2
        default = _kept_layout(frames, kept, c.window**2)
    else:  # ragged edge windows: the mean window size (only `random` allows this)
        kept_patches = round(kept * n / cfg.tokens_per_frame)
        base, extra = divmod(kept_patches, frames)
        default = [base + (1 if f < extra else 0) for f in range(frames)]
    if kept_per_frame is None:
        layout = default
    else:
        layout = [int(x) for x in kept_per_frame]
        if len(layout) != frames or sum(layout) != kept_patches or min(layout) < 0:
            raise ValueError(
                f"kept_per_frame={kept_per_frame}: needs {frames} non-negative per-frame patch "
                f"counts summing to the {kept_patches} kept patches. Fix: pass the kept patches "
                "of each frame, or leave it unset for an even spread."
            )
    return [[n] * frames] * n_full + [layout] * (depth - n_full), n_full


def _llm_flops(cfg: ExperimentConfig, kept: int, text_len: int, vocab: int) -> int:
    lm, fu = cfg.lm, cfg.fusion
    d, m, layers = lm.dim, lm.resolved_ffn_dim, lm.n_layers
    kv = lm.n_kv_heads * lm.head_dim
    arch = fu.arch
    s = budget.residual_visual_tokens(arch, kept) + text_len

    def attention(seq: int) -> int:
        return 4 * seq * d * d + 4 * seq * d * kv + 4 * seq * seq * d

    if arch == "moma":
        ffn = 0
        for n_tok, experts in ((kept, fu.moma_image_experts), (text_len, fu.moma_text_experts)):
            cap = Fraction(repr(fu.moma_capacity)) if fu.moma_capacity else Fraction(1, experts)
            ffn += experts * 6 * moe_capacity(n_tok, cap) * d * m + 2 * n_tok * d * experts
    else:
        ffn = 6 * s * d * m
    total = layers * (attention(s) + ffn) + 2 * text_len * d * vocab
    if arch == "cross_attention":
        t = text_len
        block = 4 * t * d * d + 4 * kept * d * kv + 4 * t * kept * d + 6 * t * d * m
        total += (layers // fu.cross_attention_every) * block
    elif arch not in budget.RESIDUAL_ARCHS:
        raise ValueError(
            f"fusion.arch={arch!r}: no analytic FLOPs model. Fix: add it to core/efficiency/flops.py."
        )
    return total


def analytic_flops(
    cfg: ExperimentConfig,
    frames: int | None = None,
    text_len: int | None = None,
    kept_per_frame: list[int] | None = None,
    vocab_size: int | None = None,
) -> FlopsBreakdown:
    """Forward GFLOPs of one clip (see the module docstring for every formula).

    Defaults: frames = data.max_frames, text_len = data.max_text_len, vocab = `vocab_size`, else
    lm.vocab_size, else 1000."""
    f = cfg.data.max_frames if frames is None else int(frames)
    t = cfg.data.max_text_len if text_len is None else int(text_len)
    if f < 1 or t < 0:
        raise ValueError(f"frames={f}, text_len={t}: need frames ≥ 1 and text_len ≥ 0")
    vocab = vocab_size or cfg.lm.vocab_size or DEFAULT_VOCAB
    v, c, p = cfg.vision, cfg.connector, cfg.pruning
    D, M, ps = v.dim, v.mlp_dim, v.patch_size
    n = cfg.grid * cfg.grid
    per_frame = cfg.tokens_per_frame
    kept = cfg.kept_tokens(f)
    full = f * per_frame

    blocks, _ = _vit_tokens(cfg, f, kept, kept_per_frame)
    block_flops = [vit_block_flops(tokens, D, M) for tokens in blocks]
    patch_embed = f * 2 * n * 3 * ps * ps * D

    pruned = p.method != "none" and kept < full
    scorer = 0
    if pruned and p.method == "scorer":
        hidden = p.scorer_hidden or M
        scorer = stts_scorer_flops(f, per_frame, c.window, n, D, hidden)
    elif pruned and p.method in SIMILARITY_METHODS:
        scorer = f * 2 * per_frame * c.window**2 * D

    connector = connector_flops(c.type, kept, c.window, D, cfg.lm.dim)
    llm = _llm_flops(cfg, kept, t, vocab)
    vit = patch_embed + sum(block_flops)
    return FlopsBreakdown(
        vit_blocks=[x / GIGA for x in block_flops],
        patch_embed=patch_embed / GIGA,
        vit=vit / GIGA,
        scorer=scorer / GIGA,
        connector=connector / GIGA,
        llm=llm / GIGA,
        total=(vit + scorer + connector + llm) / GIGA,
        vision_tokens_llm=kept,
        vision_tokens_full=full,
        frames=f,
        text_len=t,
        vit_tokens_per_block=[sum(tokens) for tokens in blocks],
    )
