"""Efficiency accounting: analytic FLOPs, measured time and memory, and the hardware they ran on."""

from core.efficiency.flops import FlopsBreakdown, analytic_flops
from core.efficiency.hardware import hardware_info
from core.efficiency.measure import measure_model, measure_step, peak_memory, peak_memory_info

__all__ = [
    "FlopsBreakdown",
    "analytic_flops",
    "hardware_info",
    "measure_model",
    "measure_step",
    "peak_memory",
    "peak_memory_info",
]
