"""The launcher with the real cell runner (core.cell.run_cell) on the smoke grid, inline."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from ablations import app, hydra_conf
from tests.grid_results import planned_results

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("core.cell") is None, reason="core.cell is not there yet"
)


def _smoke_args(tmp_path: Path, *train: str) -> list[str]:
    """The smoke grid run inline under `tmp_path` on tiny synthetic data; `train` sets its training
    steps."""
    return [
        "grid=smoke",
        f"results_root={tmp_path / 'results'}",
        f"data.data_root={tmp_path / 'data'}",
        "backend=inline",
        *train,
        "data.synthetic_train=24",
        "data.synthetic_val=16",
        "collect=false",
    ]


def test_smoke_grid_with_the_real_runner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    args = _smoke_args(tmp_path, "train.steps=3")
    assert app.main(hydra_conf.compose_launch(args), args) == 0
    plan = json.loads((tmp_path / "results" / "smoke" / "plan.json").read_text())
    assert len(plan["cells"]) == 3
    for entry in plan["cells"]:
        cell_dir = tmp_path / "results" / "smoke" / entry["cell_id"]
        result = json.loads((cell_dir / "result.json").read_text())
        assert result["cell_id"] == entry["cell_id"] and result["axes"] == entry["axes"]
        assert 0.0 <= result["metrics"]["accuracy"] <= 1.0
        kept = result["efficiency"]["kept_fraction"]
        assert kept == pytest.approx(1.0 - entry["axes"]["ratio"], abs=0.01)
        assert json.loads((cell_dir / "status.json").read_text())["state"] == "done"
    capsys.readouterr()
    assert app.main(hydra_conf.compose_launch(args), args) == 0  # re-launch: nothing to do
    assert "nothing to run" in capsys.readouterr().out


def test_the_protocol_with_the_real_runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Base, fine-tunes from it (the unpruned control included) and a zero-shot cell, for real."""
    monkeypatch.setenv("WANDB_MODE", "disabled")
    args = _smoke_args(
        tmp_path,
        "+grid.protocol.base.train.steps=3",
        "+grid.protocol.finetune.train.steps=2",
        "+grid.protocol.finetune.train.caption_steps=0",
    )
    assert app.main(hydra_conf.compose_launch(args), args) == 0
    grid = tmp_path / "results" / "smoke"
    results = planned_results(grid)
    base = results["jd-none-r0-l0-s0-base"]
    assert base["init"] == {"cell": ""} and base["config"]["train.steps"] == 3
    checksum = base["data"]["content_checksum"]  # the benchmark every cell of the grid used
    assert len(checksum) == 64 and all(
        r["data"]["content_checksum"] == checksum for r in results.values()
    )
    for name in ("jd-none-r0-l0-s0-ft", "jd-random-r0.5-l1-s0-ft", "jd-scorer-r0.5-l1-s0-ft"):
        tuned = results[name]
        assert tuned["init"]["cell"] == base["cell_id"] and tuned["init"]["step"] == 5  # 2 + 3
        assert tuned["config"]["train.steps"] == 2 and tuned["config"]["train.caption_steps"] == 0
    zero = results["jd-random-r0.5-l1-s0-zs"]
    assert zero["init"]["cell"] == base["cell_id"] and zero["config"]["train.steps"] == 0
    assert zero["efficiency"]["kept_fraction"] == pytest.approx(0.5, abs=0.01)
    assert set(results) == {*(n for n in results if n.endswith(("-base", "-ft", "-zs")))}
