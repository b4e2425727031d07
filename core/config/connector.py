"""Connector section: pools each w×w window of a frame's patch grid into one LLM token.

The connector's own settings live in its sub-section (`connector.attentional_pool.heads`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.config._build import extension_options, fail, resolve_options
from core.registry import CONNECTORS


@dataclass
class ConnectorConfig:
    type: str = "avgpool"
    window: int = 1
    frame_embedding: bool = True  # learned source-frame embedding: time survives pruning
    options: Any = extension_options(CONNECTORS, "type")  # written as connector.<type>.*

    def __post_init__(self) -> None:
        if self.type not in CONNECTORS:
            raise ValueError(CONNECTORS.unknown_message(self.type, "connector.type"))
        if self.window < 1:
            fail("connector.window", self.window, "must be ≥ 1", "use 2 or 3")
        resolve_options(self, "connector")
