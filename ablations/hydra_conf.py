"""Hydra wiring: the experiment sections at core defaults, and composing the launcher config.

The nine experiment sections are registered in Hydra's ConfigStore from the core dataclass defaults,
so the launcher's top-level `data`, `vision`, ... `logging` always mirror core/config exactly (no
second copy to drift) and every key is overridable as `train.steps=50`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.config.experiment import SECTIONS

CONF_DIR = Path(__file__).resolve().parent / "conf"
DEFAULTS_NAME = "experiment_defaults"


def section_defaults() -> dict[str, dict[str, Any]]:
    """Core dataclass defaults as plain dicts (no validation: registries need not be filled)."""
    out: dict[str, dict[str, Any]] = {}
    for name, cls in SECTIONS.items():
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if not f.init:
                continue
            if f.default is not dataclasses.MISSING:
                values[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                values[f.name] = f.default_factory()
        out[name] = values
    return out


def register_defaults() -> None:
    """Store the sections as the `experiment_defaults` config (idempotent)."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name=DEFAULTS_NAME, node=section_defaults(), provider="vidprune")


def compose_launch(overrides: Sequence[str] = ()) -> Any:
    """Compose `conf/launch.yaml` with command-line style overrides (tests, notebooks, benchmarks)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_defaults()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose(config_name="launch", overrides=list(overrides))
    finally:
        GlobalHydra.instance().clear()


def available(group: str) -> list[str]:
    """Options of a config group (`grid`, `scale`, `arch`, `backend`), from the conf folder."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))
