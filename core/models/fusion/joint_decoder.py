"""`joint_decoder`: visual tokens are a prefix of the text in one shared decoder.

Residual = [K visual | T text] on one RoPE position axis 0..K+T−1; causal attention with padded
visual keys masked (is_causal fast path when every visual token is valid); the final norm and LM
head run on the text slice only. An in-LLM drop removes visual positions from the residual: the
later layers run on [K′ visual | T text] (survivors keep their positions unless the reducer
renumbers).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from core.extensions import Display, TokenFlow
from core.models.fusion.base import (
    DropRun,
    FusionModel,
    FusionOutput,
    residual_decoder_flops,
    take_prefix,
)
from core.models.language_model import DecoderLM
from core.registry import FUSION_ARCHS

if TYPE_CHECKING:
    from core.config.experiment import ExperimentConfig
    from core.config.fusion import FusionConfig
    from core.config.language_model import LanguageModelConfig
    from core.models.visual_tokens import VisualTokens


@FUSION_ARCHS.register("joint_decoder")
class JointDecoder(FusionModel):
    arch = "joint_decoder"
    display = Display(label="joint decoder", short="jd", order=0)
    residual_visual = True

    def __init__(self, fusion: FusionConfig, lm: LanguageModelConfig, vocab_size: int) -> None:
        super().__init__(fusion, lm, vocab_size)
        self.lm = DecoderLM(lm, vocab_size)

    @classmethod
    def flops(cls, cfg: ExperimentConfig, flow: TokenFlow) -> int:
        """One decoder over [K visual | T text]: `residual_decoder_flops`."""
        return residual_decoder_flops(cfg, flow)

    def decoder_key_targets(self, key: str) -> list[str]:
        return [f"lm.{key}"]

    def fuse(
        self, visual: VisualTokens, input_ids: torch.Tensor, text_mask: torch.Tensor, run: DropRun
    ) -> FusionOutput:
        text = self.lm.embed_tokens(input_ids)
        h = torch.cat((visual.features.to(text.dtype), text), dim=1)
        rope, mask = run.rope(self.lm.rotary), run.mask()
        for i, layer in enumerate(self.lm.layers):
            probe = run.probe(i)
            h = layer(h, rope, mask, probe)
            n_visual = run.n_visual
            sel = run.cut(i, probe)
            if sel is not None:
                h = take_prefix(h, sel, n_visual)
                rope, mask = run.rope(self.lm.rotary), run.mask()
        logits = self.lm.lm_head(self.lm.norm(h[:, run.n_visual :]))
        return FusionOutput(logits=logits, **run.kept())
