"""Cluster profiles (`slurm/profiles/<name>.yaml`): the site facts a SLURM submission needs.

Required keys must be present (null allowed where marked) so a profile never silently submits to
a default partition or account; unknown keys are refused so typos surface before submission.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

PROFILE_DIR = Path(__file__).resolve().parent.parent / "slurm" / "profiles"

# key → (required, may be null)
PROFILE_KEYS: dict[str, tuple[bool, bool]] = {
    "partition": (True, False),  # SLURM partition to submit to
    "account": (True, True),  # --account; null → the user's default account
    "max_num_timeout": (True, False),  # requeues after a time-out (preemptions are unlimited)
    "signal_delay_s": (True, False),  # USR2 this long before the time limit
    "qos": (False, True),
    "constraint": (False, True),
    "exclude": (False, True),
    "gpus_per_node": (False, True),  # cap: refuse grids asking for more
    "cpus_per_gpu": (False, True),  # when set, cpus = gpus × this for GPU cells
    "mem_gb_per_gpu": (False, True),  # when set, mem = gpus × this for GPU cells
    "timeout_min": (False, True),  # cap on the grid's timeout_min
    "array_parallelism": (False, True),  # cap on simultaneously running array tasks
    "setup": (False, True),  # shell lines run before the job (module load, venv activate)
    "additional_parameters": (False, True),  # extra #SBATCH key → value
    "auto": (False, False),  # backend=auto may pick SLURM with this profile
    "description": (False, True),
}


# values written into `#SBATCH --key=value` lines: a node list, a constraint expression, a name;
# never whitespace, a newline (it would end the comment and inject a shell line), quotes or $
SBATCH_VALUE = re.compile(r"[A-Za-z0-9._,:=+@%&|()!*\[\]/-]{1,200}")
SBATCH_KEY = re.compile(r"[a-z][a-z0-9_-]{0,40}")
SBATCH_FIELDS = ("partition", "account", "qos", "constraint", "exclude")


class ProfileError(ValueError):
    """A cluster profile is missing, incomplete or malformed."""


def available_profiles(directory: Path = PROFILE_DIR) -> list[str]:
    return sorted(p.stem for p in directory.glob("*.yaml"))


def load_profile(name: str, directory: Path = PROFILE_DIR) -> dict[str, Any]:
    """Read and validate `<directory>/<name>.yaml`."""
    from core.io import read_yaml

    if not name:
        raise ProfileError(
            "backend.profile is not set. Fix: pass backend.profile=<name> with one of: "
            + ", ".join(available_profiles(directory))
            + f" (in {directory})."
        )
    path = directory / f"{name}.yaml"
    if not path.is_file():
        raise ProfileError(
            f"backend.profile={name!r}: no {path}. Fix: use one of: "
            + ", ".join(available_profiles(directory))
            + "."
        )
    data = read_yaml(path) or {}
    if not isinstance(data, dict):
        raise ProfileError(f"{path}: expected key: value pairs.")
    return validate_profile(data, str(path))


def validate_profile(data: dict[str, Any], where: str) -> dict[str, Any]:
    unknown = sorted(set(data) - set(PROFILE_KEYS))
    if unknown:
        raise ProfileError(
            f"{where}: {unknown[0]}: unknown profile key. Fix: use one of "
            f"{', '.join(PROFILE_KEYS)}."
        )
    for key, (required, nullable) in PROFILE_KEYS.items():
        if required and key not in data:
            raise ProfileError(
                f"{where}: required key {key!r} is missing. Fix: add `{key}: ...`"
                + (" (null allowed)" if nullable else "")
                + "."
            )
        if key in data and data[key] is None and not nullable:
            raise ProfileError(f"{where}: {key} must not be null.")
    if not isinstance(data["partition"], str) or not data["partition"]:
        raise ProfileError(f"{where}: partition must be a partition name.")
    for key in ("max_num_timeout", "signal_delay_s"):
        if not isinstance(data[key], int) or data[key] < 0:
            raise ProfileError(f"{where}: {key}={data[key]!r} must be a whole number ≥ 0.")
    for key in SBATCH_FIELDS:
        if data.get(key) is not None:
            _check_sbatch_value(f"{where}: {key}", data[key])
    setup = data.get("setup") or []
    if not isinstance(setup, list) or not all(isinstance(s, str) for s in setup):
        raise ProfileError(f"{where}: setup must be a list of shell lines.")
    for i, line in enumerate(setup):
        if any(ord(c) < 32 and c != "\t" for c in line):
            raise ProfileError(
                f"{where}: setup[{i}]={line!r}: one shell line per entry, without newlines or "
                "control characters. Fix: split it into several entries."
            )
    extra = data.get("additional_parameters") or {}
    if not isinstance(extra, dict):
        raise ProfileError(f"{where}: additional_parameters must map sbatch options to values.")
    for key, value in extra.items():
        if not isinstance(key, str) or not SBATCH_KEY.fullmatch(key):
            raise ProfileError(
                f"{where}: additional_parameters key {key!r}: not an sbatch option name. Fix: "
                "e.g. mail_type (lower case, digits, '_', '-')."
            )
        _check_sbatch_value(f"{where}: additional_parameters.{key}", value)
    return {
        **{k: None for k in PROFILE_KEYS},
        "auto": False,
        **data,
        "setup": list(setup),
        "additional_parameters": dict(extra),
    }


def _check_sbatch_value(where: str, value: Any) -> None:
    text = str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value
    if not isinstance(text, str) or not SBATCH_VALUE.fullmatch(text):
        raise ProfileError(
            f"{where}={value!r}: not a plain sbatch value (letters, digits and ._,:=+@%&|()!*[]/- "
            "only; no spaces, newlines, quotes or $). Fix: write the value SLURM expects, e.g. "
            "gpu or node[01-04]."
        )
