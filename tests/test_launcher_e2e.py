"""The launcher with the real cell runner (core.cell.run_cell) on the smoke grid, inline."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from ablations import app, hydra_conf

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("core.cell") is None, reason="core.cell is not there yet"
)


def test_smoke_grid_with_the_real_runner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    args = [
        "grid=smoke",
        f"results_root={tmp_path / 'results'}",
        f"data.data_root={tmp_path / 'data'}",
        "backend=inline",
        "train.steps=3",
        "data.synthetic_train=24",
        "data.synthetic_val=16",
        "collect=false",
    ]
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
