"""W&B join: row building from fake run objects, online detection, join notes; no network."""

from __future__ import annotations

import pandas as pd

from analysis.wandb_join import fetch_runs, join_wandb, run_to_row, runs_to_frame, wandb_online


class FakeRun:
    def __init__(self, name, config, summary, group="prune_sweep", run_id="r1"):
        self.name, self.config, self.summary, self.group, self.id = (
            name,
            config,
            summary,
            group,
            run_id,
        )
        self.state, self.url = "finished", f"https://wandb.example/{run_id}"


class FakeApi:
    def __init__(self, runs):
        self._runs, self.calls = runs, []

    def runs(self, path, filters=None):
        self.calls.append((path, filters))
        return [r for r in self._runs if r.group == filters["group"]]


def test_row_from_flat_config_and_summary():
    run = FakeRun(
        "jd-scorer-r0.5-l1-s0",
        {"cell_id": "abc", "pruning.ratio": 0.5},
        {
            "val/accuracy": 0.75,
            "_runtime": 12.5,
            "_step": 300,
            "_wandb": {"x": 1},
            "hist": [1, 2],
            "nan": float("nan"),
        },
    )
    row = run_to_row(run)
    assert row["cell_id"] == "abc" and row["wandb_name"] == "jd-scorer-r0.5-l1-s0"
    assert row["wandb_val_accuracy"] == 0.75 and row["wandb_runtime"] == 12.5
    assert "wandb_step" not in row and "wandb_wandb" not in row  # W&B internals
    assert "wandb_hist" not in row and "wandb_nan" not in row  # non-scalars, NaN


def test_cell_id_from_nested_cell_block_or_summary():
    assert run_to_row(FakeRun("a", {"cell": {"cell_id": "n1"}}, {}))["cell_id"] == "n1"
    assert run_to_row(FakeRun("a", {"cell.cell_id": "n2"}, {}))["cell_id"] == "n2"
    assert run_to_row(FakeRun("a", {}, {"cell_id": "n3"}))["cell_id"] == "n3"
    assert run_to_row(FakeRun("a", {}, {})) is None


def test_runs_to_frame_dedups_and_reports():
    runs = [
        FakeRun("a", {"cell_id": "c1"}, {"acc": 0.1}, run_id="1"),
        FakeRun("a", {"cell_id": "c1"}, {"acc": 0.2}, run_id="2"),
        FakeRun("orphan", {}, {}),
    ]
    frame, notes = runs_to_frame(runs)
    assert len(frame) == 1 and frame["wandb_acc"].item() == 0.2
    assert any("several runs" in n for n in notes) and any("orphan" in n for n in notes)


def test_online_detection(monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert wandb_online() == (False, "WANDB_API_KEY is not set")
    monkeypatch.setenv("WANDB_API_KEY", "k")
    assert wandb_online()[0]
    for mode in ("offline", "disabled", "OFFLINE"):
        monkeypatch.setenv("WANDB_MODE", mode)
        assert not wandb_online()[0]


def test_fetch_skips_offline_without_import(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    frame, notes = fetch_runs("team/proj", "prune_sweep")
    assert frame.empty and "WANDB_MODE=offline" in notes[0]


def test_fetch_filters_by_group_and_joins():
    api = FakeApi(
        [
            FakeRun("a", {"cell_id": "c1"}, {"acc": 0.5}),
            FakeRun("b", {"cell_id": "zz"}, {"acc": 0.4}),
            FakeRun("c", {"cell_id": "c9"}, {}, group="other"),
        ]
    )
    runs, notes = fetch_runs("team/proj", "prune_sweep", api=api)
    assert api.calls == [("team/proj", {"group": "prune_sweep"})] and notes == []
    cells = pd.DataFrame({"cell_id": ["c1", "c2"], "state": ["done", "done"]})
    joined, notes = join_wandb(cells, runs)
    assert joined.set_index("cell_id").loc["c1", "wandb_acc"] == 0.5
    assert pd.isna(joined.set_index("cell_id").loc["c2", "wandb_acc"])
    assert any("zz" in n for n in notes) and any("c2" in n for n in notes)


def test_api_errors_do_not_raise():
    class Broken:
        def runs(self, path, filters=None):
            raise RuntimeError("403")

    frame, notes = fetch_runs("team/proj", "g", api=Broken())
    assert frame.empty and "403" in notes[0]


def test_join_with_no_runs_is_identity():
    cells = pd.DataFrame({"cell_id": ["c1"], "state": ["done"]})
    joined, notes = join_wandb(cells, pd.DataFrame())
    assert joined.equals(cells) and notes == []
