"""Fusion section: how visual tokens enter the language model.

The arch's own settings live in its sub-section (`fusion.moma.capacity`,
`fusion.cross_attention.every`), declared by the arch class (`Config`) in core/models/fusion.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.config._build import extension_options, resolve_options
from core.registry import FUSION_ARCHS


@dataclass
class FusionConfig:
    arch: str = "joint_decoder"
    options: Any = extension_options(FUSION_ARCHS, "arch")  # written as fusion.<arch>.*

    def __post_init__(self) -> None:
        if self.arch not in FUSION_ARCHS:
            raise ValueError(FUSION_ARCHS.unknown_message(self.arch, "fusion.arch"))
        resolve_options(self, "fusion")
