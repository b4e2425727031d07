"""Connector section: pools each w×w window of a frame's patch grid into one LLM token."""

from __future__ import annotations

from dataclasses import dataclass

from core.config._build import fail
from core.registry import CONNECTORS


@dataclass
class ConnectorConfig:
    type: str = "avgpool"
    window: int = 1
    heads: int = 4
    frame_embedding: bool = True  # learned source-frame embedding: time survives pruning

    def __post_init__(self) -> None:
        if self.type not in CONNECTORS:
            raise ValueError(CONNECTORS.unknown_message(self.type, "connector.type"))
        if self.window < 1:
            fail("connector.window", self.window, "must be ≥ 1", "use 2 or 3")
        if self.heads < 1:
            fail("connector.heads", self.heads, "must be ≥ 1", "use e.g. 4")
