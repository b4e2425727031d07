"""Hydra wiring: the experiment sections at core defaults, and composing the launcher config.

The nine experiment sections are registered in Hydra's ConfigStore from the core dataclass defaults,
so the launcher's top-level `data`, `vision`, ... `logging` always mirror core/config exactly (no
second copy to drift) and every key is overridable as `train.steps=50`. Each section carries the
sub-section of every registered extension (`pruning.scorer.aux_coef=0`, `fusion.moma.capacity=0.5`);
core keeps the selected one and drops the rest. The sections are not in Hydra's struct mode, so an
unknown key reaches core's validation and gets its did-you-mean error (`pruning.aux_coef` → "did
you mean pruning.scorer.aux_coef").
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.config._build import defaults
from core.config.experiment import SECTIONS

CONF_DIR = Path(__file__).resolve().parent / "conf"
DEFAULTS_NAME = "experiment_defaults"


def section_defaults() -> dict[str, dict[str, Any]]:
    """Core dataclass defaults as plain dicts, with every registered extension's sub-section."""
    return {name: defaults(cls) for name, cls in SECTIONS.items()}


def register_defaults() -> None:
    """Store the sections as the `experiment_defaults` config (idempotent), outside struct mode."""
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    node = OmegaConf.create(section_defaults())
    for name in SECTIONS:
        OmegaConf.set_struct(node[name], False)
    ConfigStore.instance().store(name=DEFAULTS_NAME, node=node, provider="vidprune")


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
