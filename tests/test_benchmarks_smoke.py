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


# scripts whose smoke run is tested beside the code it measures
TESTED_ELSEWHERE = {
    "prune_bench.py": "tests/test_pruning.py",
    "flops_table.py": "tests/test_flops.py",
    "fsdp_memory.py": "tests/test_fsdp.py",
    "paper_shape.py": "tests/test_paper_shape.py",
    "fault_injection.py": "tests/test_launcher_locks.py",
}
REPORT_MARKER = {
    "decode_bench.py": "Machine:",
    "plan_bench.py": "| **total** |",
    "learnability.py": "| cell | accuracy | chance |",
    "clip_budget.py": "| tome | in_vit | 64 | 160 | 256 |",
}


def test_every_benchmark_script_has_a_tested_smoke_mode():
    for script in sorted(BENCHMARKS.glob("*.py")):
        if script.name.startswith("_"):  # a helper the scripts share (_report.py), not a script
            continue
        assert "--smoke" in script.read_text(), f"benchmarks/{script.name} has no --smoke mode"
        assert script.name in TESTED_ELSEWHERE or script.name in REPORT_MARKER, (
            f"benchmarks/{script.name}: add its smoke run to a test"
        )
    root = BENCHMARKS.parent
    for script, test in TESTED_ELSEWHERE.items():
        if (BENCHMARKS / script).exists():
            assert f"{script}" in (root / test).read_text(), f"{test} does not run {script}"


@pytest.mark.parametrize("script", sorted(REPORT_MARKER))
def test_smoke_mode_runs_and_writes_a_report(script, tmp_path):
    text = run_smoke(script, tmp_path)
    assert REPORT_MARKER[script] in text
