"""Grid-level progress: counts, and an ETA fitted on the finished cells (a + b·steps)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ablations.backends.grid_progress import GridProgress, cell_steps, fit
from ablations.backends.inline import run_inline


def make_cells(root: Path, steps: list[int]) -> list[Path]:
    cells = []
    for i, n in enumerate(steps):
        d = root / f"c{i}"
        d.mkdir()
        (d / "config.yaml").write_text(yaml.safe_dump({"train": {"steps": n, "caption_steps": 0}}))
        cells.append(d)
    return cells


def test_fit_recovers_a_fixed_part_and_a_part_per_step() -> None:
    a, b = fit([(600, 62.0), (100, 12.0), (0, 2.0)])
    assert a == pytest.approx(2.0) and b == pytest.approx(0.1)
    assert fit([(100, 10.0), (100, 12.0)]) == (0.0, pytest.approx(0.11))  # one step count: scale
    assert fit([(0, 3.0)]) == (3.0, 0.0)


def test_eta_counts_the_cells_left_by_their_steps(tmp_path: Path) -> None:
    cells = make_cells(tmp_path, [600, 100, 0, 100, 0])
    assert cell_steps(cells[0]) == 600 and cell_steps(tmp_path) == 0
    progress = GridProgress(cells)
    assert progress.eta_s() is None
    progress.record(cells[0], 62.0, ok=True)
    line = progress.record(cells[1], 12.0, ok=True)
    # fitted 2 s + 0.1 s/step: 2 + 12 + 2 = 16 s for the three cells left
    assert progress.eta_s() == pytest.approx(16.0)
    assert line == "grid: 2/5 cells finished, 3 left, ETA 16 s"
    assert progress.record(cells[2], 5.0, ok=False).startswith("grid: 3/5 cells finished, 1 failed")
    for d in cells[3:]:
        line = progress.record(d, 1.0, ok=True)
    assert line == "grid: 5/5 cells finished, 1 failed, 0 left"


def test_inline_backend_prints_progress_after_each_cell(tmp_path: Path, capsys) -> None:
    cells = make_cells(tmp_path, [10, 20])
    calls = []

    def fake_run_one(cell_dir, cell_fn, stage, tag, claims):
        calls.append(cell_dir.name)
        return None

    import ablations.backends.inline as inline

    original = inline.run_one
    inline.run_one = fake_run_one
    try:
        run_inline(cells, "unused:fn", progress=GridProgress(cells))
    finally:
        inline.run_one = original
    out = capsys.readouterr().out
    assert calls == ["c0", "c1"]
    assert "grid: 1/2 cells finished, 1 left, ETA" in out and "grid: 2/2 cells finished" in out
