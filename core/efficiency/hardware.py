"""What machine a measurement ran on (recorded next to every timing)."""

from __future__ import annotations

import os
import platform
import socket
from pathlib import Path
from typing import Any

import torch


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (x86 "model name", ARM "Model"/"Hardware"), else platform."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    for key in ("model name", "Model", "Hardware", "cpu model"):
        for line in text.splitlines():
            name, _, value = line.partition(":")
            if name.strip() == key and value.strip():
                return value.strip()
    return platform.processor() or platform.machine() or "unknown"


def cpu_capability() -> str:
    """The SIMD level torch's CPU kernels use (e.g. AVX512, AVX2): it changes their rounding, so
    two machines give bit-different results from the same code, data and seed."""
    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):
        return "unknown"


def hardware_info(device: torch.device | str | None = None) -> dict[str, Any]:
    """{device, device_name, threads, cpu_count, cpu_capability, torch, cuda, python, hostname}
    for `device` (default: cuda when available, else cpu)."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = device if isinstance(device, torch.device) else torch.device(device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else cpu_model()
    return {
        "device": dev.type,
        "device_name": name,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count() or 0,
        "cpu_capability": cpu_capability(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda or "",
        "python": platform.python_version(),
        "hostname": socket.gethostname(),
    }
