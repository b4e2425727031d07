"""Adding a reducer is one file: a test-only reducer, registered from this module and nothing else
edited, trains in a real cell and appears in the efficiency table with its own label and cost."""

from __future__ import annotations

import pytest

from analysis.aggregate import aggregate
from analysis.load import load_results
from analysis.tables import efficiency_table
from core.cell import run_cell
from core.registry import REDUCERS
from tests.cell_fixtures import cell_config, make_cell, write_dataset
from tests.test_flops import ToyReducer


@pytest.fixture
def registered_toy(monkeypatch):
    REDUCERS.names()
    monkeypatch.setattr(REDUCERS, "_items", dict(REDUCERS._items))
    REDUCERS.register("toy")(ToyReducer)
    monkeypatch.setenv("WANDB_MODE", "disabled")


@pytest.mark.usefixtures("registered_toy")
def test_a_one_file_reducer_reaches_the_table_with_its_label_and_cost(tmp_path):
    root = write_dataset(tmp_path / "data", "toyqa")
    grid = tmp_path / "results" / "toygrid"
    for name, pruning in (
        ("none", {"method": "none", "ratio": 0.0}),
        ("toy", {"method": "toy", "ratio": 0.5, "toy": {"weight": 2.0}}),
    ):
        sections = cell_config(root, "toyqa", pruning=pruning, train={"steps": 2})
        axes = {"arch": "joint_decoder", "method": name, "ratio": pruning["ratio"], "layer": 0}
        cell = make_cell(grid / name, sections, "toygrid", f"jd-{name}", {**axes, "seed": 0})
        run_cell(cell)
    cells, _ = load_results(tmp_path / "results", "toygrid")
    shown, numeric = efficiency_table(aggregate(cells))
    row = shown[shown["Method"] == "toy norm"]
    assert len(row) == 1, shown["Method"].tolist()
    toy = numeric.loc[row.index[0]]
    none = numeric[numeric["method"] == "none"].iloc[0]
    assert toy["total_gflops_mean"] < none["total_gflops_mean"]  # half the tokens pruned
    result = cells[cells["method"] == "toy"].iloc[0]
    assert result["reducer_gflops"] > 0  # its own flops(): 2 frames × windows × 7
