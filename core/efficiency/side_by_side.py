"""Speed-up of a model over its reference measured side by side, in one process, interleaved.

Dividing step times of different cells compares runs made at different moments (or on different
nodes): a busy minute during one cell turns a 1.5× FLOPs saving into a "9.8×" speed-up. Here both
models run in the same process on the same batch, alternating A B B A after a warm-up, so drift in
machine load hits both alike. Each pair gives one ratio reference/candidate; the speed-up is the
median of the ratios, with their quartiles as the spread.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

import torch

from core.efficiency.measure import time_call


def _quartiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) == 1:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def compare_interleaved(
    candidate: Callable[[], Any],
    reference: Callable[[], Any],
    *,
    warmup: int = 1,
    iters: int = 5,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Time `candidate` and `reference` alternately (A B B A …) → medians, speed-up and spread.

    → {candidate_s, reference_s (medians), speedup (median of reference/candidate per pair),
    speedup_q1, speedup_q3, pairs}."""
    if iters < 1 or warmup < 0:
        raise ValueError(f"iters={iters}, warmup={warmup}: need iters ≥ 1 and warmup ≥ 0")
    dev = device if isinstance(device, torch.device) else torch.device(device)
    for _ in range(warmup):
        candidate()
        reference()
    cand, ref = [], []
    for i in range(iters):
        order = ((candidate, cand), (reference, ref))
        for fn, out in order if i % 2 == 0 else order[::-1]:
            out.append(time_call(fn, dev))
    ratios = [r / c for r, c in zip(ref, cand, strict=True) if c > 0]
    q1, median, q3 = _quartiles(ratios)
    return {
        "candidate_s": statistics.median(cand),
        "reference_s": statistics.median(ref),
        "speedup": median,
        "speedup_q1": q1,
        "speedup_q3": q3,
        "pairs": len(ratios),
    }
