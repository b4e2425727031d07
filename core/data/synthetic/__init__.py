"""Synthetic video-QA benchmark: small shapes on textured backgrounds, rendered with numpy, encoded
losslessly to H.264 MP4 with PyAV (decoded frames equal the rendered ones on any FFmpeg build), with
exact QA answers, per-frame ground-truth boxes and a content checksum.

`ensure_synthetic(root, train, val, seed)` generates on first use; `generate(...)` always writes;
`dry_run(...)` returns the statistics from metadata alone; `benchmark_checksum(root, name)` reads the
content checksum from the marker; `environment_versions()` names the PyAV/FFmpeg/x264/numpy build.
CLI: `python -m core.data.synthetic`.
"""

from core.data.synthetic.benchmark import (
    GenerationArgs,
    benchmark_checksum,
    dry_run,
    ensure_synthetic,
    generate,
    plan_scenes,
)
from core.data.synthetic.checksum import environment_versions

__all__ = [
    "GenerationArgs",
    "benchmark_checksum",
    "dry_run",
    "ensure_synthetic",
    "environment_versions",
    "generate",
    "plan_scenes",
]
