"""The contract every fusion arch implements: visual tokens + text → text logits.

`FusionModel.forward(visual, input_ids, text_mask)` returns logits for TEXT positions only; labels
are next-token labels built by the data side, so archs never shift. Parameters fall into named
groups ("lm", "vision_adapters", "router") that partition the module's parameters, so training can
log or freeze them by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import nn

from core.budget import residual_visual_tokens
from core.extensions import Display, Extension, TokenFlow
from core.models.attention import causal_with_key_padding
from core.models.language_model import DecoderBlock, DecoderLM

if TYPE_CHECKING:
    from core.config.experiment import ExperimentConfig
    from core.config.fusion import FusionConfig
    from core.config.language_model import LanguageModelConfig
    from core.models.visual_tokens import VisualTokens

PARAMETER_GROUPS = ("lm", "vision_adapters", "router")
MODALITIES = ("visual", "text")  # the token groups of archs with per-modality parameters


@dataclass
class FusionOutput:
    """Text logits (B, T, V), an optional scalar auxiliary loss, and float diagnostics."""

    logits: torch.Tensor
    aux_loss: torch.Tensor | None = None
    stats: dict[str, float] = field(default_factory=dict)


class FusionModel(Extension, nn.Module):
    """Base class: input checks, residual-token accounting and parameter groups.

    A registered arch declares `display`, `residual_visual` (whether its visual tokens occupy the
    LM residual stream, and so the sequence budget), `flops(cfg, flow)` and optionally `Config`.
    """

    arch: ClassVar[str]
    display: ClassVar[Display]
    residual_visual: ClassVar[bool]

    def __init__(self, fusion: FusionConfig, lm: LanguageModelConfig, vocab_size: int) -> None:
        super().__init__()
        self.fusion_cfg = fusion
        self.options = fusion.options  # this arch's own settings (fusion.<arch>.*)
        self.lm_cfg = lm
        self.vocab_size = vocab_size

    def num_residual_visual_tokens(self, k: int) -> int:
        """Visual tokens this arch puts in the LM residual stream for K kept tokens."""
        return residual_visual_tokens(self.arch, k)

    def parameter_group(self, name: str) -> str:
        """Group of the parameter called `name`; archs override for their special parameters."""
        return "lm"

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """All parameters, each in exactly one of PARAMETER_GROUPS (some groups may be empty)."""
        groups: dict[str, list[nn.Parameter]] = {g: [] for g in PARAMETER_GROUPS}
        for name, p in self.named_parameters():
            groups[self.parameter_group(name)].append(p)
        return groups

    def decoder_key_targets(self, key: str) -> list[str]:
        """Names of this model's parameters that DecoderLM parameter `key` initialises."""
        return [key]

    def load_text_decoder(self, state: dict[str, torch.Tensor]) -> None:
        """Warm-start from a DecoderLM state dict (e.g. a mapped Qwen3 checkpoint).

        Every "lm"-group parameter must be covered; arch-specific parameters that have no text
        counterpart (cross-attention blocks, routers) keep their initialisation.
        """
        mapped = {t: v for key, v in state.items() for t in self.decoder_key_targets(key)}
        missing, unexpected = self.load_state_dict(mapped, strict=False)
        missing = [m for m in missing if self.parameter_group(m) == "lm"]
        if missing or unexpected:
            raise ValueError(
                f"text decoder weights do not fit fusion.arch={self.arch}: missing "
                f"{missing[:5]}, unexpected {unexpected[:5]}. Fix: check that lm.* "
                "matches the checkpoint."
            )

    def check_inputs(
        self, visual: VisualTokens, input_ids: torch.Tensor, text_mask: torch.Tensor
    ) -> None:
        """Shape/dtype checks that need no host sync; raise with the offending field named."""
        if input_ids.dim() != 2 or input_ids.dtype != torch.long:
            raise ValueError(
                f"input_ids must be a (B, T) long tensor, got {input_ids.dtype} "
                f"{tuple(input_ids.shape)}"
            )
        if text_mask.shape != input_ids.shape or text_mask.dtype != torch.bool:
            raise ValueError(
                f"text_mask must be a bool tensor shaped like input_ids "
                f"{tuple(input_ids.shape)}, got {text_mask.dtype} "
                f"{tuple(text_mask.shape)}"
            )
        b, k, d = visual.features.shape
        if b != input_ids.shape[0]:
            raise ValueError(f"visual batch {b} != text batch {input_ids.shape[0]}")
        if d != self.lm_cfg.dim:
            raise ValueError(
                f"visual.features dim {d} != lm.dim={self.lm_cfg.dim}. Fix: the "
                "connector must project to lm.dim."
            )
        total = self.num_residual_visual_tokens(k) + input_ids.shape[1]
        if total > self.lm_cfg.max_seq_len:
            raise ValueError(
                f"fusion.arch={self.arch}: {self.num_residual_visual_tokens(k)} residual visual "
                f"tokens + {input_ids.shape[1]} text tokens = {total} > lm.max_seq_len="
                f"{self.lm_cfg.max_seq_len}. Fix: raise lm.max_seq_len or keep fewer tokens."
            )


def residual_decoder_flops(cfg: ExperimentConfig, flow: TokenFlow) -> int:
    """Layer l is a DecoderBlock on its visual tokens plus the text (`DecoderBlock.flops`); the LM
    head runs on the text positions."""
    lm, t = cfg.lm, flow.text_len
    layers = sum(DecoderBlock.flops(lm, visual + t) for visual in flow.llm_visual)
    return layers + DecoderLM.head_flops(lm, t, flow.vocab)


def prefix_key_valid(visual: VisualTokens, text_len: int) -> torch.Tensor:
    """(B, K+T) key validity for a [visual | text] residual: visual.valid, then all text True.

    Text padding is right padding: under causality no real text query sees it, so it stays valid.
    """
    valid = visual.valid
    ones = torch.ones(valid.shape[0], text_len, dtype=torch.bool, device=valid.device)
    return torch.cat((valid, ones), dim=1)


def prefix_attention_mask(visual: VisualTokens, text_len: int) -> torch.Tensor | None:
    """Causal + key-padding mask for [visual | text], or None (is_causal fast path) when every
    visual token is valid. The all-valid check is one host sync per forward."""
    if bool(visual.valid.all()):
        return None
    return causal_with_key_padding(prefix_key_valid(visual, text_len))
