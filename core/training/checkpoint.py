"""Atomic training checkpoints that load with `torch.load(weights_only=True)`.

A checkpoint is a dict of tensors and plain containers (model/optimizer/scheduler state dicts, step,
RNG states). RNG states are converted to tensors/lists/ints here so the safe unpickler accepts them;
nothing executable is ever unpickled. `last.pt` is replaced atomically; the previous one is kept as
`prev.pt` so a checkpoint corrupted by the storage layer still leaves one to resume from.

FSDP cells write *sharded* checkpoints instead (`core.training.sharded_checkpoint`): directories
`last/` and `prev/` with the same guarantees. `resume_points` lists every readable checkpoint of
either kind, newest first, so a cell resumes from the newest one whichever way it last ran.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.io import atomic_write
from core.training import sharded_checkpoint as sharded

LAST = "last.pt"
PREVIOUS = "prev.pt"


def save_checkpoint(
    path: str | os.PathLike[str], state: dict[str, Any], keep_previous: bool = True
) -> Path:
    """Write `state` to `path` atomically; with `keep_previous`, the file it replaces becomes
    `prev.pt` in the same directory."""
    target = Path(path)

    def write(f: Any) -> None:
        torch.save(state, f)
        if keep_previous and target.exists():
            os.replace(target, target.with_name(PREVIOUS))

    return atomic_write(target, write, binary=True)


def load_checkpoint(path: str | os.PathLike[str], mmap: bool = False) -> dict[str, Any]:
    """Load a checkpoint onto the CPU with the safe (weights-only) unpickler; `mmap` maps the
    tensors from the file instead of reading them (cheap when only part of it is used)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(
            f"{p}: checkpoint not found. Fix: check train.init_from / the cell dir."
        )
    state = torch.load(p, map_location="cpu", weights_only=True, mmap=mmap)
    if not isinstance(state, dict):
        raise ValueError(f"{p}: expected a dict checkpoint, got {type(state).__name__}")
    return state


def load_latest_checkpoint(
    directory: str | os.PathLike[str],
) -> tuple[Path, dict[str, Any]] | None:
    """(path, state) of `last.pt` if it loads, else of `prev.pt`, else None (a fresh start).

    Every unreadable checkpoint is reported with a warning naming the file and the error, so a
    fallback to an older checkpoint, or to step 0, is never silent."""
    d = Path(directory)
    for name in (LAST, PREVIOUS):
        p = d / name
        if not p.is_file():
            continue
        try:
            return p, load_checkpoint(p)
        except Exception as exc:  # a torn or corrupted file: fall back to the older one
            older = "prev.pt" if name == LAST else "no checkpoint: training restarts at step 0"
            warnings.warn(
                f"{p} is unreadable ({type(exc).__name__}: {exc}); falling back to {older}",
                stacklevel=2,
            )
    return None


def load_model_weights(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], int | None]:
    """(model weights, step) of a checkpoint file (a whole checkpoint or bare weights) or of a
    sharded checkpoint directory, read in this process (weights only)."""
    p = Path(path)
    if p.is_dir():
        return sharded.load_sharded_model_weights(p), int(sharded.read_run_state(p)["step"])
    state = load_checkpoint(p)
    step = state.get("step")
    return state.get("model", state), None if step is None else int(step)


@dataclass
class ResumePoint:
    """A readable checkpoint: `state` is the whole checkpoint of a file (`last.pt`), or the run
    state (everything but model and optimizer) of a sharded directory (`last/`)."""

    path: Path
    state: dict[str, Any]
    sharded: bool

    @property
    def step(self) -> int:
        return int(self.state["step"])


def resume_points(directory: str | os.PathLike[str]) -> list[ResumePoint]:
    """Every readable checkpoint in `directory` (`last/`, `last.pt`, `prev/`, `prev.pt`), newest
    step first. Each unreadable one is reported with a warning naming it, the error and what is
    used instead, so a fallback to an older checkpoint, or to step 0, is never silent."""
    d = Path(directory)
    points, broken = [], []
    for name, is_dir in (
        (sharded.LAST, True),
        (LAST, False),
        (sharded.PREVIOUS, True),
        (PREVIOUS, False),
    ):
        p = d / name
        if not (p.is_dir() if is_dir else p.is_file()):
            continue
        try:
            state = sharded.read_run_state(p) if is_dir else load_checkpoint(p, mmap=True)
            points.append(ResumePoint(p, state, is_dir))
        except Exception as exc:  # a torn or corrupted checkpoint: fall back to an older one
            broken.append((p, exc))
    points.sort(key=lambda point: -point.step)  # stable: last before prev on equal steps
    instead = f"{points[0].path.name}" if points else "no checkpoint: training restarts at step 0"
    for p, exc in broken:
        warnings.warn(
            f"{p} is unreadable ({type(exc).__name__}: {exc}); falling back to {instead}",
            stacklevel=2,
        )
    return points


def remove_temp_files(directory: str | os.PathLike[str]) -> list[Path]:
    """Delete the temp files and directories of interrupted atomic writes (`.<name>.*.tmp`) in
    `directory`.

    Call it only as the cell's single writer (at the start of a run)."""
    d = Path(directory)
    if not d.is_dir():
        return []
    removed = []
    for tmp in d.glob(".*.tmp"):
        with contextlib.suppress(OSError):
            if tmp.is_dir() and not tmp.is_symlink():
                shutil.rmtree(tmp)
            else:
                tmp.unlink()
            removed.append(tmp)
    return removed


def capture_rng_state() -> dict[str, Any]:
    """Python, numpy and torch (CPU + every CUDA device) RNG states as weights-only-safe values."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": {"version": version, "state": list(internal), "gauss": gauss},
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of `capture_rng_state` (a CUDA state is restored only when CUDA is available)."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(x) for x in py["state"]), py["gauss"]))
    npst = state["numpy"]
    keys = np.asarray(npst["keys"].numpy() if torch.is_tensor(npst["keys"]) else npst["keys"])
    np.random.set_state(
        (
            npst["kind"],
            keys.astype(np.uint32),
            int(npst["pos"]),
            int(npst["has_gauss"]),
            float(npst["cached_gaussian"]),
        )
    )
    torch.set_rng_state(state["torch"].to(torch.uint8).cpu())
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = [s.to(torch.uint8).cpu() for s in state["cuda"]]
        torch.cuda.set_rng_state_all(cuda_states[: torch.cuda.device_count()])
