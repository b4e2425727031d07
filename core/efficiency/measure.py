"""Wall-clock and peak-memory measurement of model calls, identical for the cell runner and benchmarks.

Timing: CUDA events around each call after a synchronize on CUDA (the GPU's own clock, so queued
work is included), `time.perf_counter` on CPU. Memory, in MiB (reported as "MB"):
- CUDA: `torch.cuda.max_memory_allocated` after resetting the peak stats (tensors only, the
  caching allocator's reserve is excluded) — method "cuda_max_allocated";
- CPU: the process's peak resident set size while `fn` runs. The kernel's high-water mark (VmHWM)
  is reset by writing "5" to /proc/self/clear_refs and read from /proc/self/status — method
  "vmhwm"; where that reset is not allowed, a background thread samples VmRSS every millisecond —
  method "rss_sampling" (may miss spikes shorter than the interval); without /proc, "unavailable"
  and NaN. The CPU number is absolute (interpreter, libraries and model included), as the CUDA
  number includes the weights: compare measurements, do not read one as "activation memory".
"""

from __future__ import annotations

import math
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

MIB = 2**20
STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")


def _as_device(device: torch.device | str | None) -> torch.device:
    if device is None:
        return torch.device("cpu")
    return device if isinstance(device, torch.device) else torch.device(device)


def time_call(fn: Callable[[], Any], device: torch.device) -> float:
    """Seconds one call of `fn` takes: CUDA events after a synchronize on CUDA, else perf_counter."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize(device)
        return start.elapsed_time(end) / 1000.0
    tick = time.perf_counter()
    fn()
    return time.perf_counter() - tick


def measure_step(
    fn: Callable[[], Any], warmup: int = 1, iters: int = 3, device: torch.device | str | None = None
) -> dict[str, float]:
    """Run `fn` `warmup` times untimed, then `iters` times timed → {mean_s, std_s, min_s, iters}.

    std_s is the sample standard deviation (0 for one iteration)."""
    if iters < 1 or warmup < 0:
        raise ValueError(f"iters={iters}, warmup={warmup}: need iters ≥ 1 and warmup ≥ 0")
    dev = _as_device(device)
    for _ in range(warmup):
        fn()
    times = [time_call(fn, dev) for _ in range(iters)]
    return {
        "mean_s": statistics.fmean(times),
        "std_s": statistics.stdev(times) if len(times) > 1 else 0.0,
        "min_s": min(times),
        "iters": len(times),
    }


def _status_kib(field: str) -> int | None:
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_hwm() -> bool:
    try:
        CLEAR_REFS.write_text("5")
    except OSError:
        return False
    # The reset takes effect only if VmHWM dropped to the current RSS (some kernels ignore it).
    hwm, rss = _status_kib("VmHWM"), _status_kib("VmRSS")
    return hwm is not None and rss is not None and hwm <= rss + 1024


class _RssSampler:
    """Polls VmRSS on a daemon thread and keeps the maximum."""

    def __init__(self, interval_s: float = 0.001) -> None:
        self.interval_s = interval_s
        self.peak = _status_kib("VmRSS") or 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _status_kib("VmRSS") or 0)
            self._stop.wait(self.interval_s)

    def __enter__(self) -> _RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _status_kib("VmRSS") or 0)


def peak_memory_info(fn: Callable[[], Any], device: torch.device | str | None = None) -> dict:
    """Run `fn` once → {"peak_memory_mb": float, "method": str} (see the module docstring)."""
    dev = _as_device(device)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        fn()
        torch.cuda.synchronize(dev)
        return {
            "peak_memory_mb": torch.cuda.max_memory_allocated(dev) / MIB,
            "method": "cuda_max_allocated",
        }
    if _status_kib("VmRSS") is None:
        fn()
        return {"peak_memory_mb": math.nan, "method": "unavailable"}
    if _reset_hwm():
        fn()
        hwm = _status_kib("VmHWM")
        if hwm is not None:
            return {"peak_memory_mb": hwm * 1024 / MIB, "method": "vmhwm"}
    with _RssSampler() as sampler:
        fn()
    return {"peak_memory_mb": sampler.peak * 1024 / MIB, "method": "rss_sampling"}


def peak_memory(fn: Callable[[], Any], device: torch.device | str | None = None) -> float:
    """Peak memory in MB (MiB) while `fn` runs once; `peak_memory_info` also names the method."""
    return peak_memory_info(fn, device)["peak_memory_mb"]


def measure_model(
    forward_fn: Callable[[], Any],
    train_step_fn: Callable[[], Any] | None = None,
    warmup: int = 1,
    iters: int = 3,
    device: torch.device | str | None = None,
) -> dict[str, Any]:
    """Time a forward call and a forward+backward step, and the peak memory of the latter.

    → {forward_s, forward_std_s, forward_backward_s, forward_backward_std_s, peak_memory_mb,
    forward_peak_memory_mb, method (memory), timer}. Times are means over `iters` after `warmup`.
    Without `train_step_fn` the backward entries are NaN and the peak is that of the forward."""
    dev = _as_device(device)
    fwd = measure_step(forward_fn, warmup, iters, dev)
    fwd_mem = peak_memory_info(forward_fn, dev)
    out: dict[str, Any] = {
        "forward_s": fwd["mean_s"],
        "forward_std_s": fwd["std_s"],
        "forward_peak_memory_mb": fwd_mem["peak_memory_mb"],
        "timer": "cuda_events" if dev.type == "cuda" else "perf_counter",
    }
    if train_step_fn is None:
        out.update(
            forward_backward_s=math.nan,
            forward_backward_std_s=math.nan,
            peak_memory_mb=fwd_mem["peak_memory_mb"],
            method=fwd_mem["method"],
        )
        return out
    step = measure_step(train_step_fn, warmup, iters, dev)
    step_mem = peak_memory_info(train_step_fn, dev)
    out.update(
        forward_backward_s=step["mean_s"],
        forward_backward_std_s=step["std_s"],
        peak_memory_mb=max(step_mem["peak_memory_mb"], fwd_mem["peak_memory_mb"]),
        method=step_mem["method"],
    )
    return out
