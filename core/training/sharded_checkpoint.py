"""Sharded checkpoints of FSDP cells with `torch.distributed.checkpoint` (DCP).

Layout: `checkpoints/last/` (and `prev/`, the one before) holds DCP's shard files (`__<rank>_0.distcp`,
one per rank), its `.metadata`, and `state.pt`: everything but the model and optimizer (scheduler,
RNG, step, config and its hash), a weights-only-safe `torch.save` written by rank 0.

Guarantees, as for `last.pt`:
- Atomic: every rank writes into one temp directory `.last.<step>.tmp`; only once all shards and
  `state.pt` are on disk does rank 0 rename `last/` → `prev/` and the temp directory → `last/`. A
  crash mid-save leaves a temp directory (removed at the next start) and the old `last/` or
  `prev/`, never a half checkpoint under a trusted name.
- Safe loading: tensors, non-tensor values and `.metadata` are all read with restricted unpicklers
  (tensors and values: `weights_only=True`; metadata: only DCP's own metadata classes), so a
  checkpoint can never run code.
- Any world size: DCP reshards on load, so a cell resumes on more or fewer ranks, or as one process
  into a plain model.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint import CheckpointException, FileSystemReader, FileSystemWriter
from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner
from torch.distributed.checkpoint.metadata import Metadata, StorageMeta, TensorStorageMetadata
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_state_dict,
    set_state_dict,
)
from torch.distributed.fsdp import FSDPModule

from core.io import atomic_write, fsync_dir

LAST, PREVIOUS = "last", "prev"
RUN_STATE = "state.pt"
METADATA = ".metadata"


# ---- saving ------------------------------------------------------------------------------------
def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


@contextlib.contextmanager
def _single_process_ok() -> Iterator[None]:
    """Silence DCP's "torch.distributed is disabled ... assuming ... a single process" warning:
    without a process group, one process is what we mean."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "torch.distributed is disabled", UserWarning)
        yield


def save_sharded_checkpoint(
    directory: str | os.PathLike[str],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    run_state: dict[str, Any],
) -> Path:
    """Collective (every rank calls it): write `directory/last/` atomically, keeping the previous
    one as `prev/`. `run_state` (rank 0's is written) must hold `step`."""
    d = Path(directory)
    tmp = d / f".{LAST}.{int(run_state['step'])}.tmp"
    trash = d / f".{PREVIOUS}.{int(run_state['step'])}.tmp"
    if _rank() == 0:
        shutil.rmtree(tmp, ignore_errors=True)  # of an earlier attempt killed at this step
        tmp.mkdir(parents=True)
    _barrier()
    model_state, optim_state = get_state_dict(model, optimizer)
    with _single_process_ok():  # returns on every rank once all shards and metadata are written
        dcp.save(
            {"model": model_state, "optimizer": optim_state},
            storage_writer=FileSystemWriter(tmp, sync_files=True),
            no_dist=not dist.is_initialized(),
        )
    if _rank() == 0:
        atomic_write(tmp / RUN_STATE, lambda f: torch.save(run_state, f), binary=True)
        fsync_dir(tmp)
        last, prev = d / LAST, d / PREVIOUS
        shutil.rmtree(trash, ignore_errors=True)
        if last.exists():
            if prev.exists():
                os.replace(prev, trash)
            os.replace(last, prev)
        os.replace(tmp, last)
        fsync_dir(d)
        shutil.rmtree(trash, ignore_errors=True)
    _barrier()
    return d / LAST


# ---- loading -----------------------------------------------------------------------------------
def read_run_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    """`state.pt` of the sharded checkpoint `path` (weights-only); raises if it is incomplete."""
    p = Path(path)
    if not (p / METADATA).is_file():
        raise FileNotFoundError(f"{p}: no {METADATA} (an incomplete sharded checkpoint)")
    state = torch.load(p / RUN_STATE, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or "step" not in state:
        raise ValueError(f"{p / RUN_STATE}: expected a dict with a step")
    return state


# Classes `.metadata` may name: DCP's metadata records, paths, and torch's dtype/size/layout.
_METADATA_MODULES = (
    "torch.distributed.checkpoint.metadata",
    "torch.distributed.checkpoint.filesystem",
)
_METADATA_GLOBALS = {
    ("pathlib", "PosixPath"),
    ("pathlib", "WindowsPath"),
    ("pathlib", "PurePosixPath"),
    ("pathlib", "PureWindowsPath"),
    ("torch", "Size"),
    ("torch.serialization", "_get_layout"),
    ("collections", "OrderedDict"),
}


class _MetadataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module in _METADATA_MODULES or (module, name) in _METADATA_GLOBALS:
            obj = super().find_class(module, name)
            if isinstance(obj, type) or (module, name) in _METADATA_GLOBALS:
                return obj
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        if module == "torch" and isinstance(getattr(torch, name, None), torch.memory_format):
            return getattr(torch, name)
        raise pickle.UnpicklingError(
            f"sharded checkpoint metadata names {module}.{name}, which is not DCP metadata; "
            "refusing to load it"
        )


class SafeReader(FileSystemReader):
    """DCP's file reader with `.metadata` read by a restricted unpickler (DCP uses plain pickle)."""

    def read_metadata(self) -> Metadata:  # no **kwargs: no fallback to per-rank metadata files
        with open(Path(self.path) / METADATA, "rb") as f:
            metadata = _MetadataUnpickler(f).load()
        if not isinstance(metadata, Metadata):
            raise pickle.UnpicklingError(f"{self.path}/{METADATA}: not DCP metadata")
        if getattr(metadata, "storage_meta", None) is None:
            metadata.storage_meta = StorageMeta()
        metadata.storage_meta.load_id = self.load_id
        return metadata


class SafeLoadPlanner(DefaultLoadPlanner):
    """DCP's load planner, but non-tensor values (optimizer hyper-parameters, ...) are unpickled
    weights-only; DCP's default unpickles them unrestricted."""

    def load_bytes(self, read_item: Any, value: io.BytesIO) -> None:
        obj = torch.load(value, weights_only=True)
        plain = io.BytesIO()
        torch.save(obj, plain)  # re-serialised from the safely loaded value
        plain.seek(0)
        super().load_bytes(read_item, plain)


class ShardedCheckpointError(RuntimeError):
    """A sharded checkpoint failed to load (raised on every rank: DCP gathers the failures)."""


def _dcp_load(state: dict[str, Any], path: str | os.PathLike[str], no_dist: bool) -> None:
    try:
        with _single_process_ok():
            dcp.load(
                state, storage_reader=SafeReader(path), planner=SafeLoadPlanner(), no_dist=no_dist
            )
    except CheckpointException as exc:  # a BaseException: make it an ordinary error
        rank, (error, _) = next(iter(sorted(exc.failures.items())))
        raise ShardedCheckpointError(
            f"{path}: failed on rank(s) {sorted(exc.failures)}, rank {rank}: "
            f"{type(error).__name__}: {error}"
        ) from None


def load_sharded_checkpoint(
    path: str | os.PathLike[str], model: nn.Module, optimizer: torch.optim.Optimizer
) -> None:
    """Collective: load model and optimizer state from the sharded checkpoint `path` into `model`
    (FSDP-sharded over any number of ranks, or a plain module) and `optimizer`."""
    model_state, optim_state = get_state_dict(model, optimizer)
    state = {"model": model_state, "optimizer": optim_state}
    _dcp_load(state, path, no_dist=not dist.is_initialized())
    set_state_dict(
        model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"]
    )


def load_sharded_model_weights(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The full model state dict stored in the sharded checkpoint `path`, read in one process
    without a process group (for inspection, export and tests)."""
    prefix = "model."
    metadata = SafeReader(path).read_metadata()
    weights = {
        key.removeprefix(prefix): torch.empty(meta.size, dtype=meta.properties.dtype)
        for key, meta in metadata.state_dict_metadata.items()
        if key.startswith(prefix) and isinstance(meta, TensorStorageMetadata)
    }
    _dcp_load({"model": weights}, path, no_dist=True)
    return weights


def _optimizer_state_by_name(osd: dict[str, Any]) -> dict[str, Any]:
    """A `optimizer.state_dict()` keyed by parameter names (from each group's `names`)."""
    name_of: dict[int, str] = {}
    for group in osd["param_groups"]:
        if "names" not in group:
            raise ValueError(
                "the checkpoint's optimizer groups have no parameter names; it cannot be loaded "
                "into an FSDP model. Fix: resume it with train.parallel=ddp."
            )
        name_of.update(zip(group["params"], group["names"], strict=True))
    return {
        "state": {name_of[i]: s for i, s in osd["state"].items()},
        "param_groups": [
            {**g, "params": [name_of[i] for i in g["params"]]} for g in osd["param_groups"]
        ],
    }


def load_full_checkpoint(
    checkpoint: dict[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer
) -> None:
    """Load a whole-model checkpoint (`last.pt`: every rank holds all of it) into a plain or an
    FSDP-sharded model and its optimizer (each rank keeps its shard)."""
    if not isinstance(model, FSDPModule):
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        return
    set_state_dict(
        model,
        optimizer,
        model_state_dict=checkpoint["model"],
        optim_state_dict=_optimizer_state_by_name(checkpoint["optimizer"]),
        options=StateDictOptions(full_state_dict=True),
    )
