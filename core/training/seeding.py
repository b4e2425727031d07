"""One call that seeds every RNG a cell touches and makes CPU kernels deterministic."""

from __future__ import annotations

import os
import random

import numpy as np
import torch


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed python, numpy and torch (all devices). With `deterministic`, ask torch for
    deterministic algorithms (warn-only, so ops without one still run) and disable cuDNN autotuning;
    CPU results then repeat bit-for-bit for the same seed, thread count and inputs."""
    if not 0 <= seed < 2**32:
        raise ValueError(f"train.seed={seed}: must lie in [0, 2**32). Fix: use a small integer.")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        # cuBLAS needs this workspace setting for deterministic GEMMs; harmless on CPU.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
