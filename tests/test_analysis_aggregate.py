"""Seed aggregation, Δ / speed-ups vs the unpruned reference, and that non-done cells never count."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from analysis.aggregate import add_reference, aggregate, group_state
from analysis.load import load_results
from tests.results_fixture import build_results_tree, cell_id, cell_name, result_dict


@pytest.fixture(scope="module")
def agg(tmp_path_factory):
    tree = build_results_tree(tmp_path_factory.mktemp("results"))
    cells, _ = load_results(tree.root)
    return aggregate(cells)


def group(
    agg: pd.DataFrame, grid="prune_sweep", arch="joint_decoder", method="scorer", ratio=0.5, layer=1
) -> pd.Series:
    hit = agg[
        (agg["grid"] == grid)
        & (agg["arch"] == arch)
        & (agg["method"] == method)
        & (agg["ratio"] == ratio)
        & (agg["layer"] == layer)
    ]
    assert len(hit) == 1
    return hit.iloc[0]


def test_mean_std_over_seeds_hand_computed(agg):
    g = group(agg)  # seeds: 0.74, 0.75, 0.76
    assert g["n"] == 3 and g["n_planned"] == 3 and g["state"] == "done" and g["flag"] == ""
    assert g["accuracy_mean"] == pytest.approx(0.75)
    assert g["accuracy_std"] == pytest.approx(0.01)  # sample std (ddof=1)
    assert g["seeds"] == "0,1,2"
    # step time 0.2·0.75·(1 + 0.1·seed) → 0.15, 0.165, 0.18
    assert g["train_step_s_mean"] == pytest.approx(0.165)
    assert g["train_step_s_std"] == pytest.approx(0.015)
    assert g["acc_color_mean"] == pytest.approx(0.80)


def test_delta_and_speedups_vs_reference_hand_computed(agg):
    g = group(agg)
    # reference (none): 0.79, 0.80, 0.81 → per-seed Δ = −0.05 exactly
    assert g["delta_accuracy_mean"] == pytest.approx(-0.05)
    assert g["delta_accuracy_std"] == pytest.approx(0.0, abs=1e-12)
    assert g["n_ref"] == 3
    # step, measured side by side in each cell: 0.2(1+0.1s) / 0.15(1+0.1s) = 4/3 for every seed
    assert g["speedup_step_mean"] == pytest.approx(4 / 3)
    assert g["speedup_train_measured_q1_mean"] == pytest.approx(4 / 3 - 0.02)
    # GFLOPs: unpruned 2.0 + 0.05 + 0.5 + 0.03·128 = 6.39; r0.5 l1: 1.5 + 0.1 + 0.05 + 2.42 = 4.07
    assert g["total_gflops_mean"] == pytest.approx(4.07)
    assert g["speedup_gflops_mean"] == pytest.approx(6.39 / 4.07)
    # the vision side counts the reducer's scoring with the ViT: 2.0 / (1.5 + 0.1)
    assert g["speedup_vision_gflops_mean"] == pytest.approx(2.0 / 1.6)
    # memory: (400 + 2·64) / (400 + 2·128)
    assert g["memory_ratio_mean"] == pytest.approx(528 / 656)
    ref = group(agg, method="none", ratio=0.0)
    assert ref["delta_accuracy_mean"] == 0 and ref["speedup_step_mean"] == pytest.approx(1.0)


def test_failed_seed_is_counted_not_averaged(agg):
    g = group(agg, ratio=0.7, layer=2)  # seed 2 failed; seeds 0, 1: 0.71, 0.72
    assert (g["n"], g["n_planned"], g["n_failed"]) == (2, 3, 1)
    assert g["state"] == "partial" and "1 failed" in g["flag"] and g["seeds"] == "0,1"
    assert g["accuracy_mean"] == pytest.approx(0.715)
    assert g["accuracy_std"] == pytest.approx(math.sqrt(2) * 0.005)
    assert g["delta_accuracy_mean"] == pytest.approx(-0.08)


def test_new_running_pending_incomplete_never_averaged(agg):
    new = group(agg, arch="mot", method="random", ratio=0.7, layer=1)
    assert (new["n"], new["n_new"]) == (2, 1)
    assert new["accuracy_mean"] == pytest.approx((0.55 - 0.01 + 0.55 + 0.01) / 2)
    running = group(agg, arch="mot", method="easy", ratio=0.5, layer=2)
    assert (running["n"], running["n_running"], running["n_pending"]) == (1, 1, 1)
    assert math.isnan(running["accuracy_std"])  # one seed: no std, not 0
    assert running["flag"] == "1 running; 1 pending"
    corrupt = group(agg, method="random", ratio=0.5, layer=2)
    assert (corrupt["n"], corrupt["n_incomplete"]) == (2, 1)


def test_negative_control_a_done_failed_cell_changes_the_mean(tmp_path):
    """Making the failed cell done (with a wild accuracy) must move the mean: the test above
    would notice if failed cells were averaged in."""
    tree = build_results_tree(tmp_path)
    name = cell_name("joint_decoder", "scorer", 0.7, 2, 2)
    axes = dict(arch="joint_decoder", method="scorer", ratio=0.7, layer=2, seed=2)
    result = result_dict("prune_sweep", name, axes)
    result["metrics"]["accuracy"] = 0.0
    cell_dir = tree.root / "prune_sweep" / cell_id("prune_sweep", name)
    (cell_dir / "result.json").write_text(json.dumps(result))
    cells, _ = load_results(tree.root, "prune_sweep")
    g = group(aggregate(cells), ratio=0.7, layer=2)
    assert g["n"] == 3 and g["accuracy_mean"] == pytest.approx((0.71 + 0.72) / 3)


def test_reference_is_matched_per_seed(tmp_path):
    tree = build_results_tree(tmp_path)
    ref = cell_name("joint_decoder", "none", 0.0, 1, 2)
    (tree.root / "prune_sweep" / cell_id("prune_sweep", ref) / "result.json").unlink()
    cells, _ = load_results(tree.root, "prune_sweep")
    with_ref = add_reference(cells)
    seed2 = with_ref[(with_ref["name"] == cell_name("joint_decoder", "scorer", 0.5, 1, 2))]
    assert seed2["delta_accuracy"].isna().all()
    g = group(aggregate(cells))
    # Δ over seeds 0 and 1 only, each against its own reference: still exactly −0.05
    assert g["n_ref"] == 2 and g["delta_accuracy_mean"] == pytest.approx(-0.05)
    assert "no done reference for 1 seed(s)" in g["flag"]
    # other archs are untouched
    assert group(aggregate(cells), arch="mot")["n_ref"] == 3


def test_group_without_done_seeds_reports_its_state(agg):
    g = group(agg, grid="arch_sweep", arch="cross_attention")
    assert g["n"] == 0 and g["state"] == "failed" and math.isnan(g["accuracy_mean"])
    mixed = group(agg, grid="arch_sweep", arch="moma")
    assert "config differs across seeds: train.steps" in mixed["flag"]


def test_group_state_names():
    assert group_state({"done": 3}) == "done"
    assert group_state({"done": 1, "failed": 1}) == "partial"
    assert group_state({"failed": 1, "new": 2}) == "new/failed"


def test_aggregate_of_empty_frame(tmp_path):
    cells, _ = load_results(tmp_path)
    out = aggregate(cells)
    assert out.empty and {"n", "state", "accuracy_mean"} <= set(out.columns)
