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


def test_paper_shape_smoke_measures_every_setting_and_profiles(tmp_path):
    """benchmarks/paper_shape.py --smoke --profile: every frames × topk setting measured, the packed
    blocks equal to the per-frame run, the analytic speed-up the FLOPs model's, the profile split
    into parts (STTS's packed blocks and scorer present, the unpruned model's absent)."""
    import json

    from core.efficiency.flops import analytic_flops
    from tests.test_paper_shape import PAPER

    text = run_smoke("paper_shape.py", tmp_path, "--profile")
    assert "Machine:" in text and "## Profile: 4 frames, topk 0.5" in text
    state = json.loads((tmp_path / "paper_shape.json").read_text())
    assert state["complete"] and not state["skipped"]
    order = [(r["frames"], r["ratio"]) for r in state["rows"]]  # ratio-major, 0.5 first
    assert order == [(f, r) for r in (0.5, 0.3, 0.7) for f in (4, 8)]
    rows = {(r["frames"], r["ratio"]): r for r in state["rows"]}
    sections = PAPER.preset_sections(smoke=True)
    for (frames, ratio), row in rows.items():
        ref = analytic_flops(PAPER.bench_config(sections, frames, 0.0, 16)).total
        cand = analytic_flops(PAPER.bench_config(sections, frames, ratio, 16)).total
        assert row["analytic"]["even"] == ref / cand
        assert row["packing"]["rel_diff"] < 1e-5
        for kind in ("train", "prefill"):
            assert row[kind]["pairs"] == 2 and row[kind]["candidate_s"] > 0
    profile = rows[(4, 0.5)]["profile"]
    for kind in ("prefill", "train"):
        stts, unpruned = profile["stts"][kind]["ms"], profile["unpruned"][kind]["ms"]
        assert stts["vit_packed"] > 0 and stts["scorer"] > 0 and stts["llm"] > 0
        assert unpruned["vit_packed"] == unpruned["scorer"] == 0 and unpruned["vit"] > 0
    assert profile["stts"]["train"]["ms"]["rest"] > 0  # the backward
