"""Reading back what a real launch wrote: each planned cell's result by cell name."""

from __future__ import annotations

import json
from pathlib import Path


def planned_results(grid: Path) -> dict[str, dict]:
    """The result.json of every cell in `grid`'s plan.json, keyed by cell name."""
    plan = json.loads((grid / "plan.json").read_text())
    return {
        c["name"]: json.loads((grid / c["cell_id"] / "result.json").read_text())
        for c in plan["cells"]
    }
