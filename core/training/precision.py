"""The one mixed-precision rule of training, evaluation and measurement."""

from __future__ import annotations

import torch


def uses_bf16(device: torch.device, precision: str) -> bool:
    """bf16 autocast on CUDA for `train.precision` auto or bf16; fp32 everywhere else."""
    return device.type == "cuda" and precision in ("auto", "bf16")


def autocast(device: torch.device, precision: str) -> torch.autocast:
    """The autocast context for `device` under `train.precision`."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=uses_bf16(device, precision))
