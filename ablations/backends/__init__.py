"""Backends that run planned cells: inline (this process), local (submitit LocalExecutor), slurm.

`BACKENDS` maps each name to its `prepare(settings, spec) -> submit` (ablations.backends.base).
`choose_backend` resolves `backend=auto`: SLURM only when `sinfo` answers AND a SLURM_* variable
is set or the chosen profile says `auto: true` (never merely because `srun` is on PATH), else inline.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ablations.backends import inline, local, slurm
from ablations.backends.base import LaunchSettings, Prepare, Submit
from ablations.jobs import sinfo_answers
from ablations.profiles import load_profile

BACKENDS: dict[str, Prepare] = {
    "inline": inline.prepare,
    "local": local.prepare,
    "slurm": slurm.prepare,
}


def choose_backend(backend: Mapping[str, Any]) -> str:
    name = str(backend.get("name", "auto"))
    if name in BACKENDS:
        return name
    if name != "auto":
        raise ValueError(
            f"backend={name!r}: unknown backend. Fix: use auto or one of {tuple(BACKENDS)}."
        )
    if not sinfo_answers(float(backend.get("probe_timeout_s") or 5)):
        return "inline"
    in_slurm_env = any(k.startswith("SLURM_") for k in os.environ)
    profile_name = backend.get("profile")
    if profile_name:
        if load_profile(str(profile_name)).get("auto"):
            return "slurm"
        return "slurm" if in_slurm_env else "inline"
    if in_slurm_env:
        raise ValueError(
            "backend=auto: SLURM answers and SLURM_* variables are set, but no cluster profile is "
            "chosen. Fix: add backend.profile=<name> (slurm/profiles/), or backend=inline."
        )
    return "inline"


__all__ = ["BACKENDS", "LaunchSettings", "Submit", "choose_backend"]
