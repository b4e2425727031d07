"""Run cells one after another in this process; a failing cell is recorded and the others go on."""

from __future__ import annotations

import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from ablations.backends.job import load_callable
from ablations.state import mark_failed
from core.training.status import CellStatus


def run_inline(cell_dirs: Sequence[Path], cell_fn: str) -> dict[str, str | None]:
    """{cell dir name: None if it finished, else the error}; every cell is attempted."""
    outcome: dict[str, str | None] = {}
    fn = None
    for i, cell_dir in enumerate(cell_dirs, 1):
        start = time.perf_counter()
        print(f"[inline {i}/{len(cell_dirs)}] {cell_dir.name} ...", flush=True)
        try:
            fn = fn or load_callable(cell_fn)
            fn(str(cell_dir))
        except KeyboardInterrupt:
            CellStatus(cell_dir).pending()  # interrupted, not failed: the next launch resumes it
            raise
        except Exception as exc:  # one cell's failure never stops the others
            reason = f"{type(exc).__name__}: {exc}"
            mark_failed(cell_dir, reason)
            outcome[cell_dir.name] = reason
            print(f"[inline {i}/{len(cell_dirs)}] {cell_dir.name} FAILED: {reason}", flush=True)
            traceback.print_exc()
            continue
        outcome[cell_dir.name] = (
            None
            if (cell_dir / "result.json").is_file()
            else ("the cell function returned without writing result.json")
        )
        if outcome[cell_dir.name]:
            mark_failed(cell_dir, outcome[cell_dir.name] or "")
        took = time.perf_counter() - start
        print(f"[inline {i}/{len(cell_dirs)}] {cell_dir.name} done in {took:.1f}s", flush=True)
    return outcome
