"""Loading the results tree: one row per planned cell, states, reasons, and reports."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from analysis.load import list_grids, load_history, load_results
from tests.results_fixture import build_results_tree, cell_id, cell_name


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return build_results_tree(tmp_path_factory.mktemp("results"))


@pytest.fixture(scope="module")
def prune(tree):
    return load_results(tree.root, "prune_sweep")


def row(df: pd.DataFrame, name: str) -> pd.Series:
    hits = df[df["name"] == name]
    assert len(hits) == 1, name
    return hits.iloc[0]


def test_grids_are_found_and_trash_is_ignored(tree):
    assert list_grids(tree.root) == ["arch_sweep", "prune_sweep"]
    df, _ = load_results(tree.root, "prune_sweep")
    assert not df["cell_id"].str.contains("old-cell").any()


def test_one_row_per_planned_cell_plus_stray_folder(prune):
    df, report = prune
    # 2 archs × (3 none + 4 ratio·layer × 3 methods × 3 seeds) = 78 planned, + 1 folder not in plan
    assert len(df) == 79
    assert df["cell_id"].is_unique
    assert report.counts["prune_sweep"] == {
        "done": 74,
        "failed": 1,
        "running": 1,
        "pending": 1,
        "incomplete": 1,
        "new": 1,
    }
    assert report.total() == 79 and report.total("done") == 74
    stray = row(df, "jd-heuristic-r0.5-l1-s0")
    assert not stray["in_plan"] and stray["state"] == "done"
    assert any("not in plan.json" in m for m in report.messages)


def test_states_and_reasons(tree, prune):
    df, report = prune
    assert set(df.loc[df["state"] == "failed", "name"]) == set(tree.failed)
    assert set(df.loc[df["state"] == "new", "name"]) == set(tree.new)
    failed = row(df, "jd-scorer-r0.7-l2-s2")
    assert failed["state"] == "failed" and "loss is NaN" in failed["error"]
    assert failed["failed_step"] == 40 and failed["attempts"] == 2
    assert pd.isna(failed["accuracy"])
    new = row(df, "mot-random-r0.7-l1-s1")
    assert new["state"] == "new" and pd.isna(new["cell_dir"])
    assert (new["arch"], new["ratio"], new["layer"], new["seed"]) == (
        "mot",
        0.7,
        1,
        1,
    )
    assert row(df, "mot-easy-r0.5-l2-s0")["state"] == "running"
    assert row(df, "mot-easy-r0.5-l2-s1")["state"] == "pending"
    corrupt = row(df, "jd-random-r0.5-l2-s1")
    assert corrupt["state"] == "incomplete" and pd.isna(corrupt["accuracy"])
    assert any("not valid JSON" in m for m in report.messages)
    noted = {(n.name, n.state) for n in report.notes}
    assert noted == {(r["name"], r["state"]) for _, r in df[df["state"] != "done"].iterrows()}
    text = report.format()
    for state in ("failed", "new", "running", "pending", "incomplete"):
        assert f"[{state}]" in text


def test_metric_efficiency_hardware_columns(prune):
    df, _ = prune
    r = row(df, "jd-scorer-r0.5-l1-s0")
    assert r["accuracy"] == pytest.approx(0.74)
    assert r["acc_color"] == pytest.approx(0.79)
    assert r["acc_which_first"] == pytest.approx(0.74)  # "which-first" → column-safe name
    assert r["count_needle"] == 10
    assert r["vision_tokens_llm"] == 64 and r["vision_tokens_full"] == 128
    assert r["train_step_s"] == pytest.approx(0.15)
    assert r["total_gflops"] == pytest.approx(4.07)
    assert (r["device"], r["threads"], r["hostname"]) == ("cpu", 2, "fixture-host")
    assert r["wall_s"] == 60.0 and r["git_commit"] == "abc1234"
    assert df["ratio"].dtype == float and str(df["seed"].dtype) == "Int64"


def test_mixed_grids_are_kept_apart_and_reported(tree):
    df, report = load_results(tree.root)
    assert set(df["grid"]) == {"prune_sweep", "arch_sweep"}
    assert len(df[df["grid"] == "arch_sweep"]) == 16
    assert report.counts["arch_sweep"] == {"done": 14, "failed": 2}
    assert any("2 grids loaded together" in m for m in report.messages)
    assert any("says grid 'prune_sweep'" in m for m in report.messages)
    assert any("train.steps" in m for m in report.messages)
    mism = df[df["config_mismatch"].notna()]
    assert set(mism["name"]) == {"moma-scorer-r0.5-l1-s0", "moma-scorer-r0.5-l1-s1"}


def test_axes_disagreement_between_plan_and_result_is_reported(tmp_path):
    tree = build_results_tree(tmp_path)
    name = cell_name("mot", "scorer", 0.5, 1, 0)
    path = tree.root / "prune_sweep" / cell_id("prune_sweep", name) / "result.json"
    result = json.loads(path.read_text())
    result["axes"]["layer"] = 3
    path.write_text(json.dumps(result))
    df, report = load_results(tree.root, "prune_sweep")
    assert row(df, name)["layer"] == 3
    assert any("differ from plan.json for layer" in m for m in report.messages)


def test_partial_result_is_reported_and_left_nan(tmp_path):
    tree = build_results_tree(tmp_path)
    name = cell_name("mot", "scorer", 0.5, 1, 0)
    path = tree.root / "prune_sweep" / cell_id("prune_sweep", name) / "result.json"
    result = json.loads(path.read_text())
    del result["efficiency"]["train_step_s"]
    path.write_text(json.dumps(result))
    df, report = load_results(tree.root, "prune_sweep")
    assert row(df, name)["state"] == "done" and pd.isna(row(df, name)["train_step_s"])
    assert any("partial result.json" in m and "train_step_s" in m for m in report.messages)


def test_empty_missing_root_and_unknown_grid(tmp_path):
    df, report = load_results(tmp_path)
    assert df.empty and report.empty and "empty results tree" in report.format()
    for col in ("grid", "cell_id", "state", *("arch", "method", "ratio", "layer", "seed")):
        assert col in df.columns
    df, report = load_results(tmp_path / "nope")
    assert df.empty and "does not exist" in report.format()
    (tmp_path / "g").mkdir()
    df, report = load_results(tmp_path, "prune_sweep")
    assert df.empty and "not found" in report.format()


def test_running_cell_gets_stale_note(tmp_path):
    tree = build_results_tree(tmp_path)
    name = cell_name("mot", "easy", 0.5, 2, 0)
    path = tree.root / "prune_sweep" / cell_id("prune_sweep", name) / "status.json"
    status = json.loads(path.read_text())
    status["updated"] = "2020-01-01T00:00:00+00:00"
    path.write_text(json.dumps(status))
    df, _ = load_results(tree.root, "prune_sweep")
    assert "stale" in row(df, name)["error"]


def test_history(tree):
    hist = load_history(tree.root, "prune_sweep")
    assert {"cell_id", "step", "phase", "train/loss"} <= set(hist.columns)
    assert set(hist["phase"]) == {"train", "eval"}
    # done cells log eval, the failed/running ones stopped in training
    evals = hist[hist["phase"] == "eval"]["cell_id"].nunique()
    assert evals == 74
