"""`moma`: Mixture of Modality-aware experts (arXiv 2407.21770).

Attention (and its norms) is shared exactly as in `joint_decoder`. The FFN is one expert group per
modality ("visual": `fusion.moma.image_experts`, "text": `fusion.moma.text_experts`). Training
uses expert-choice (EC) routing per group: sigmoid scores s = σ(W_g x) (no bias), capacity
k_e = min(N, max(1, ceil(c·N))) with c = `fusion.moma.capacity` or 1/E and N the routable tokens of
that modality in the whole batch; each expert takes its top-k_e tokens and a token's output is
Σ_{experts that chose it} s_e · SwiGLU_e(x) (0 if none chose it: the residual carries it).
Padded tokens (invalid visual tokens and text padding) are removed before routing, so they take no
capacity and cannot change which real tokens are chosen.

EC mixes samples (batch-level top-k), so eval routes per token instead, making a sample's output
independent of its batch: with `fusion.moma.eval_router="aux"` a per-group auxiliary linear classifier
(trained with BCE on detached inputs to predict EC's choices; its loss is the arch's aux_loss)
decides expert e iff its probability > 0.5, weighted by the main router score; with
`"token_choice"` each token takes its top-r experts by main score, r = max(1, round(c·E)).

An in-LLM drop removes visual positions from the residual and from the routable sets, so the later
layers' routers never see a dropped token (it takes no capacity; k_e follows the shorter N).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from core.config._build import fail
from core.extensions import Display, TokenFlow
from core.models.attention import AttentionProbe, RMSNorm, Rope, RotaryEmbedding, SwiGLU
from core.models.fusion.base import MODALITIES, DropRun, FusionModel, FusionOutput, take_prefix
from core.models.language_model import (
    NORM_EPS,
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

EVAL_ROUTERS = ("aux", "token_choice")


@dataclass
class MoMaConfig:
    """`fusion.moma.*`."""

    image_experts: int = 4
    text_experts: int = 4
    capacity: float = 0.0  # 0 → 1/experts (paper default)
    eval_router: str = "aux"

    def check(self, path: str) -> None:
        for name in ("image_experts", "text_experts"):
            if getattr(self, name) < 1:
                fail(f"{path}.{name}", getattr(self, name), "must be ≥ 1", "use e.g. 4")
        if not 0.0 <= self.capacity <= 1.0:
            fail(
                f"{path}.capacity",
                self.capacity,
                "must lie in [0, 1]",
                "use 0 for the 1/experts default",
            )
        if self.eval_router not in EVAL_ROUTERS:
            fail(
                f"{path}.eval_router",
                self.eval_router,
                "unknown eval router",
                f"use one of {EVAL_ROUTERS}",
            )

    def experts(self, modality: str) -> int:
        return {"visual": self.image_experts, "text": self.text_experts}[modality]

    def capacity_fraction(self, n_experts: int) -> Fraction:
        """c as an exact fraction: the configured decimal (0.1 is 1/10), or 1/E when 0."""
        return Fraction(repr(self.capacity)) if self.capacity else Fraction(1, n_experts)


def expert_capacity(n_tokens: int, capacity: Fraction) -> int:
    """k_e = min(N, max(1, ceil(c·N))), in exact arithmetic (0.1·30 is 3, not 4)."""
    return min(n_tokens, max(1, math.ceil(capacity * n_tokens)))


def experts_per_token(n_experts: int, capacity: Fraction) -> int:
    """r = max(1, round(c·E)) (halves round up), at most E."""
    return min(n_experts, max(1, math.floor(capacity * n_experts + Fraction(1, 2))))


def expert_choice(scores: torch.Tensor, capacity: Fraction) -> torch.Tensor:
    """(N, E) scores → (N, E) bool: each expert (column) takes its top-k_e tokens."""
    k = expert_capacity(scores.shape[0], capacity)
    top = scores.topk(k, dim=0).indices
    return torch.zeros_like(scores, dtype=torch.bool).scatter_(0, top, True)


def token_choice(scores: torch.Tensor, r: int) -> torch.Tensor:
    """(N, E) scores → (N, E) bool: each token (row) takes its top-r experts."""
    top = scores.topk(r, dim=1).indices
    return torch.zeros_like(scores, dtype=torch.bool).scatter_(1, top, True)


class ExpertGroup(nn.Module):
    """One modality's router, experts and (optional) auxiliary router."""

    def __init__(
        self, dim: int, hidden: int, n_experts: int, capacity: Fraction, eval_router: str
    ) -> None:
        super().__init__()
        self.capacity = capacity
        self.router = nn.Linear(dim, n_experts, bias=False)
        self.experts = nn.ModuleList(SwiGLU(dim, hidden) for _ in range(n_experts))
        self.aux_router = nn.Linear(dim, n_experts) if eval_router == "aux" else None

    def select(self, x: torch.Tensor, scores: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Which experts process which tokens; training → EC, eval → per-token router."""
        info: dict[str, torch.Tensor] = {}
        if self.training:
            chosen = expert_choice(scores.detach(), self.capacity)
            if self.aux_router is not None:
                aux_logits = self.aux_router(x.detach())
                info["aux_loss"] = F.binary_cross_entropy_with_logits(aux_logits, chosen.float())
                info["aux_acc"] = ((aux_logits > 0) == chosen).float().mean()
        elif self.aux_router is not None:
            chosen = self.aux_router(x) > 0
        else:
            chosen = token_choice(scores, experts_per_token(len(self.experts), self.capacity))
        return chosen, info

    @staticmethod
    def flops(dim: int, hidden: int, n_experts: int, capacity: Fraction, tokens: int) -> int:
        """Training-time routing of N tokens: the router 2·N·d·E, and each of the E experts runs
        its SwiGLU on the k_e = expert_capacity(N, c) tokens it chose. Eval-time routers pick a
        data-dependent count (and the aux router adds 2·N·d·E); not counted."""
        k = expert_capacity(tokens, capacity)
        return n_experts * SwiGLU.flops(dim, hidden, k) + 2 * tokens * dim * n_experts

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """x (N, D) routable tokens → (y (N, D), chosen (N, E) bool, info)."""
        scores = torch.sigmoid(self.router(x))
        chosen, info = self.select(x, scores)
        y = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):
            idx = chosen[:, e].nonzero().squeeze(1)
            if idx.numel():
                y = y.index_add(0, idx, scores[idx, e, None] * expert(x[idx]))
        return y, chosen, info


class MoMaFFN(nn.Module):
    """Routes each routable token to its modality's expert group; other tokens get 0."""

    def __init__(self, lm: LanguageModelConfig, fusion: FusionConfig) -> None:
        super().__init__()
        opts: MoMaConfig = fusion.options
        self.groups = nn.ModuleDict()
        for m in MODALITIES:
            n = opts.experts(m)
            c = opts.capacity_fraction(n)
            self.groups[m] = ExpertGroup(lm.dim, lm.resolved_ffn_dim, n, c, opts.eval_router)

    def forward(
        self, x: torch.Tensor, routable: dict[str, torch.Tensor], records: list[dict]
    ) -> torch.Tensor:
        """x (B, S, D); routable[m] (B, S) bool per modality; appends one record per group."""
        b, s, d = x.shape
        flat = x.reshape(b * s, d)
        out = torch.zeros_like(flat)
        for m in MODALITIES:
            idx = routable[m].reshape(-1).nonzero().squeeze(1)
            group = self.groups[m]
            if idx.numel() == 0:
                records.append({"group": m, "n": 0, "load": torch.zeros(len(group.experts))})
                continue
            y, chosen, info = group(flat[idx])
            out = out.index_copy(0, idx, y)
            records.append({"group": m, "n": idx.numel(), "load": chosen.sum(0), **info})
        return out.view(b, s, d)


class MoMaBlock(nn.Module):
    """Shared pre-norm attention, then the modality-aware expert FFN."""

    def __init__(self, lm: LanguageModelConfig, fusion: FusionConfig) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(lm.dim, NORM_EPS)
        self.self_attn = make_attention(lm)
        self.post_attention_layernorm = RMSNorm(lm.dim, NORM_EPS)
        self.mlp = MoMaFFN(lm, fusion)

    def forward(
        self,
        h: torch.Tensor,
        rope: Rope,
        mask: torch.Tensor | None,
        routable: dict[str, torch.Tensor],
        records: list[dict],
        probe: AttentionProbe | None = None,
    ) -> torch.Tensor:
        h = h + self.self_attn(self.input_layernorm(h), rope, mask, probe)
        return h + self.mlp(self.post_attention_layernorm(h), routable, records)


@FUSION_ARCHS.register("moma")
class MoMa(FusionModel):
    arch = "moma"
    Config = MoMaConfig
    display = Display(label="MoMa", short="moma", order=30)
    residual_visual = True

    def __init__(self, fusion: FusionConfig, lm: LanguageModelConfig, vocab_size: int) -> None:
        super().__init__(fusion, lm, vocab_size)
        self.embed_tokens = nn.Embedding(vocab_size, lm.dim)
        self.rotary = RotaryEmbedding(lm.head_dim, lm.rope_theta)
        self.layers = nn.ModuleList(MoMaBlock(lm, fusion) for _ in range(lm.n_layers))
        self.norm = RMSNorm(lm.dim, NORM_EPS)
        self.lm_head = nn.Linear(lm.dim, vocab_size, bias=False)
        init_weights(self)

    @classmethod
    def flops(cls, cfg: ExperimentConfig, flow: TokenFlow) -> int:
        """Per layer: the shared attention over S = visual + T (`Attention.flops`) and one expert
        group per modality on that modality's tokens (`ExpertGroup.flops`); the LM head."""
        lm, opts, t = cfg.lm, cfg.fusion.options, flow.text_len
        total = DecoderLM.head_flops(lm, t, flow.vocab)
        for visual in flow.llm_visual:
            total += attention_flops(lm, visual + t, visual + t)
            for m, n_tokens in zip(MODALITIES, (visual, t), strict=True):
                n = opts.experts(m)
                total += ExpertGroup.flops(
                    lm.dim, lm.resolved_ffn_dim, n, opts.capacity_fraction(n), n_tokens
                )
        return total

    def decoder_key_targets(self, key: str) -> list[str]:
        """Warm start by upcycling: every expert starts as a copy of the dense MLP."""
        head, sep, proj = key.partition(".mlp.")
        if not sep:
            return [key]
        layer = self.layers[int(head.removeprefix("layers."))]
        return [
            f"{head}.mlp.groups.{m}.experts.{e}.{proj}"
            for m, group in layer.mlp.groups.items()
            for e in range(len(group.experts))
        ]

    def parameter_group(self, name: str) -> str:
        if ".router." in name or ".aux_router." in name:
            return "router"
        return "vision_adapters" if ".groups.visual." in name else "lm"

    def fuse(
        self, visual: VisualTokens, input_ids: torch.Tensor, text_mask: torch.Tensor, run: DropRun
    ) -> FusionOutput:
        text = self.embed_tokens(input_ids)
        h = torch.cat((visual.features.to(text.dtype), text), dim=1)
        rope, mask = run.rope(self.rotary), run.mask()
        no_text = torch.zeros_like(text_mask)
        no_visual = torch.zeros_like(visual.valid)
        routable = {
            "visual": torch.cat((visual.valid, no_text), dim=1),
            "text": torch.cat((no_visual, text_mask), dim=1),
        }
        records: list[dict] = []
        for i, layer in enumerate(self.layers):
            probe = run.probe(i)
            h = layer(h, rope, mask, routable, records, probe)
            n_visual = run.n_visual
            sel = run.cut(i, probe)
            if sel is not None:
                h = take_prefix(h, sel, n_visual)
                routable = {m: take_prefix(r, sel, n_visual) for m, r in routable.items()}
                rope, mask = run.rope(self.rotary), run.mask()
        logits = self.lm_head(self.norm(h[:, run.n_visual :]))
        aux = [r["aux_loss"] for r in records if "aux_loss" in r]
        aux_loss = torch.stack(aux).mean() if aux else None
        stats = _routing_stats(records)
        return FusionOutput(logits, aux_loss, stats, **run.kept())


def _routing_stats(records: list[dict]) -> dict[str, float]:
    """Per-expert loads averaged over layers: tokens processed and fraction of routable tokens."""
    stats: dict[str, float] = {}
    for m in MODALITIES:
        rows = [r for r in records if r["group"] == m]
        n = sum(r["n"] for r in rows) / len(rows)
        loads = torch.stack([r["load"].float().cpu() for r in rows]).mean(0)
        stats[f"moma/{m}/routable_tokens"] = float(n)
        for e, load in enumerate(loads.tolist()):
            stats[f"moma/{m}/expert{e}/tokens"] = load
            stats[f"moma/{m}/expert{e}/load"] = load / n if n else 0.0
        accs = [r["aux_acc"] for r in rows if "aux_acc" in r]
        if accs:
            stats[f"moma/{m}/aux_router_accuracy"] = float(torch.stack(accs).mean())
    return stats
