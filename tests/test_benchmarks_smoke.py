"""Every benchmark script's smoke mode runs end to end, so none rots (no timing is asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def run_smoke(script: str, tmp_path: Path, *extra: str) -> str:
    out = tmp_path / f"{Path(script).stem}.md"
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--smoke", "--out", str(out), *extra],
        capture_output=True,
        text=True,
        timeout=600,
        env={**__import__("os").environ, "WANDB_MODE": "disabled"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert out.is_file(), f"{script} --smoke wrote nothing to {out}"
    return out.read_text()


@pytest.mark.parametrize("script", ["decode_bench.py"])
def test_smoke_mode_runs_and_writes_a_report(script, tmp_path):
    text = run_smoke(script, tmp_path)
    assert "Machine:" in text
