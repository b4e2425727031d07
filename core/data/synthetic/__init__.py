"""Synthetic video-QA benchmark: small shapes on textured backgrounds, rendered with numpy, encoded
to H.264 MP4 with PyAV, with exact QA answers and per-frame ground-truth boxes.

`ensure_synthetic(root, train, val, seed)` generates on first use; `generate(...)` always writes;
`dry_run(...)` returns the statistics from metadata alone. CLI: `python -m core.data.synthetic`.
"""

from core.data.synthetic.benchmark import (
    GenerationArgs,
    dry_run,
    ensure_synthetic,
    generate,
    plan_scenes,
)

__all__ = ["GenerationArgs", "dry_run", "ensure_synthetic", "generate", "plan_scenes"]
