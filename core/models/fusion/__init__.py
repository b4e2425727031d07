"""The four fusion archs (registered in FUSION_ARCHS) and `build_fusion`.

Archs: `joint_decoder`, `cross_attention`, `mot`, `moma`. Each is a `FusionModel` mapping
(VisualTokens, input_ids, text_mask) → FusionOutput with logits for text positions only.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from core.models.fusion import cross_attention, joint_decoder, moma, mot  # noqa: F401  (register)
from core.models.fusion.base import PARAMETER_GROUPS, FusionModel, FusionOutput
from core.registry import FUSION_ARCHS

if TYPE_CHECKING:
    from core.config.fusion import FusionConfig
    from core.config.language_model import LanguageModelConfig

__all__ = ["PARAMETER_GROUPS", "FusionModel", "FusionOutput", "build_fusion"]


def build_fusion(fusion: FusionConfig, lm: LanguageModelConfig, vocab_size: int) -> FusionModel:
    """Instantiate `fusion.arch` over a language model with `vocab_size` output logits.

    `lm.type="decoder"`: freshly initialised. `lm.type="qwen3"`: architecture fields and weights
    come from the local checkpoint `lm.checkpoint` (lm.max_seq_len stays as configured); the
    vocabulary is the checkpoint's, which must cover the tokenizer's `vocab_size`.
    """
    if fusion.arch not in FUSION_ARCHS:
        raise ValueError(FUSION_ARCHS.unknown_message(fusion.arch, "fusion.arch"))
    cls = FUSION_ARCHS.get(fusion.arch)
    if lm.type != "qwen3":
        return cls(fusion, lm, vocab_size)
    from core.models.qwen3 import load_qwen3

    state, fields = load_qwen3(lm.checkpoint)
    if vocab_size > fields["vocab_size"]:
        raise ValueError(
            f"tokenizer has {vocab_size} ids but lm.checkpoint={lm.checkpoint!r} "
            f"embeds only {fields['vocab_size']}. Fix: use the checkpoint's tokenizer."
        )
    lm = dataclasses.replace(lm, **fields)
    model = cls(fusion, lm, fields["vocab_size"])
    model.load_text_decoder(state)
    return model
