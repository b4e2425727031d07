"""Named registries for every extension point (datasets, sampling policies, encoders, ...).

Each registry knows the module that fills it, so `get`/`names` import it on first use: configs can
validate registry keys without relying on import side effects elsewhere.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from typing import Any


class Registry:
    """Maps a name to an object for one extension point, with helpful unknown-key errors."""

    def __init__(
        self, kind: str, populate: tuple[str, ...] = (), requires: tuple[str, ...] = ()
    ) -> None:
        self.kind = kind
        self._populate = populate
        self._requires = requires  # attributes every registered object must declare
        self._populated = False
        self._populating = False
        self._items: dict[str, Any] = {}

    def register(self, name: str) -> Callable[[Any], Any]:
        """Decorator: `@REG.register("name")` on a class or function."""

        def deco(obj: Any) -> Any:
            if name in self._items and self._items[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            missing = [a for a in self._requires if getattr(obj, a, None) is None]
            if missing:
                raise TypeError(
                    f"{self.kind} {name!r} ({getattr(obj, '__qualname__', obj)!r}) does not declare "
                    f"{', '.join(missing)}. Fix: every {self.kind} declares {', '.join(self._requires)}"
                    " in its own module (see core/extensions.py)."
                )
            self._items[name] = obj
            return obj

        return deco

    def _ensure_populated(self) -> None:
        """Import the modules that fill this registry, once they all import.

        A failed import propagates and leaves the registry unpopulated, so the next lookup retries
        (and fails with the same import error) instead of reporting every valid key as unknown.
        Lookups made while the modules are importing see the entries registered so far.
        """
        if self._populated or self._populating:
            return
        self._populating = True
        try:
            for module in self._populate:
                importlib.import_module(module)
        finally:
            self._populating = False
        self._populated = True

    def names(self) -> list[str]:
        self._ensure_populated()
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        self._ensure_populated()
        return name in self._items

    def get(self, name: str) -> Any:
        self._ensure_populated()
        if name not in self._items:
            raise KeyError(self.unknown_message(name))
        return self._items[name]

    def unknown_message(self, name: str, field: str | None = None) -> str:
        options = self.names()
        close = difflib.get_close_matches(str(name), options, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        where = f"{field}={name!r}" if field else f"{self.kind} {name!r}"
        return f"{where}: unknown {self.kind}.{hint} Available: {', '.join(options)}."


DATASETS = Registry("dataset type", ("core.data.datasets",))
SAMPLING_POLICIES = Registry("sampling policy", ("core.data.sampling",))
# The extension points: each registered class declares its config, cost and (some) display itself.
VISION_ENCODERS = Registry(
    "vision encoder", ("core.models.vision",), ("Config", "flops", "hosts_reducers", "num_blocks")
)
CONNECTORS = Registry("connector", ("core.models.connectors",), ("Config", "flops"))
FUSION_ARCHS = Registry(
    "fusion arch", ("core.models.fusion",), ("Config", "flops", "display", "residual_visual")
)
REDUCERS = Registry(
    "token reducer", ("core.pruning",), ("Config", "flops", "display", "token_flow")
)
