"""Grid-level progress for backends that run cells one after another: cells done / failed / left
and an ETA from the cells measured so far.

A cell's time is modelled as a fixed part plus a part per training step (seconds ≈ a + b·steps),
fitted by least squares on the finished cells, so a grid that starts with long base cells does not
overestimate its short fine-tunes and zero-shot cells; with one measured cell (or one distinct step
count) the time per cell scales with its steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import yaml

from ablations.estimate import format_duration
from core.results import CONFIG_FILE


def cell_steps(cell_dir: Path) -> int:
    """Training steps of a prepared cell (its frozen config), 0 when unreadable."""
    try:
        train = (yaml.safe_load((cell_dir / CONFIG_FILE).read_text()) or {}).get("train", {})
        return int(train.get("steps", 0)) + int(train.get("caption_steps", 0))
    except (OSError, ValueError, TypeError, AttributeError, yaml.YAMLError):
        return 0


def fit(samples: Sequence[tuple[int, float]]) -> tuple[float, float]:
    """(a, b) of seconds ≈ a + b·steps; both ≥ 0."""
    n = len(samples)
    xs = [s for s, _ in samples]
    ys = [t for _, t in samples]
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    var = sum((x - mean_x) ** 2 for x in xs)
    if var == 0:
        return (0.0, mean_y / mean_x) if mean_x else (mean_y, 0.0)
    b = max(0.0, sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / var)
    return max(0.0, mean_y - b * mean_x), b


class GridProgress:
    """Counts and ETA over the cells of one launch."""

    def __init__(self, cell_dirs: Sequence[Path]) -> None:
        self.steps = {d.name: cell_steps(d) for d in cell_dirs}
        self.samples: list[tuple[int, float]] = []
        self.finished: set[str] = set()
        self.failed = 0

    def record(self, cell_dir: Path, seconds: float, ok: bool) -> str:
        """Note one cell's end; returns the progress line."""
        self.finished.add(cell_dir.name)
        if ok:
            self.samples.append((self.steps.get(cell_dir.name, 0), seconds))
        else:
            self.failed += 1
        return self.line()

    def eta_s(self) -> float | None:
        if not self.samples:
            return None
        a, b = fit(self.samples)
        left = [s for name, s in self.steps.items() if name not in self.finished]
        return sum(a + b * s for s in left)

    def line(self) -> str:
        total, done = len(self.steps), len(self.finished)
        failed = f", {self.failed} failed" if self.failed else ""
        eta = self.eta_s()
        tail = "" if eta is None or done == total else f", ETA {format_duration(eta)}"
        return f"grid: {done}/{total} cells finished{failed}, {total - done} left{tail}"
