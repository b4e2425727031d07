"""The reducer zoo: the grid plans every registered method under the protocol, a tiny version runs
with the real runner, tables group methods by stage, and the by-stage figure colours by stage with
the plain baselines always drawn."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ablations import app, hydra_conf
from ablations.overrides import read_command_line
from analysis.data import GridData
from analysis.tables import efficiency_table
from core.registry import REDUCERS
from paper_figures import accuracy_vs_speedup_by_stage as by_stage
from tests.grid_results import planned_results

GRID = Path(__file__).resolve().parents[1] / "ablations" / "conf" / "grid" / "reducer_zoo.yaml"


def _grid_methods() -> list[str]:
    import yaml

    return yaml.safe_load(GRID.read_text())["axes"]["method"]


def _compose(*overrides: str) -> dict:
    args = ["grid=reducer_zoo", *overrides]
    cfg = hydra_conf.compose_launch(args)
    cli = read_command_line(cfg, args)
    return {c.name: c for c in app.compose_cells(cfg, app.grid_spec(cfg, cli), cli)}


def test_the_zoo_lists_every_registered_method_and_plans_the_protocol():
    assert set(REDUCERS.names()) <= set(_grid_methods())  # a new method joins the zoo
    here = [m for m in _grid_methods() if m in REDUCERS]
    cells = _compose(f"grid.axes.method=[{','.join(here)}]")
    bases = [c for c in cells.values() if c.protocol == "base"]
    assert sorted(c.axes["seed"] for c in bases) == [0, 1, 2]
    assert all(c.config.lm.n_layers == 4 for c in cells.values())  # one LM for every cell
    for method in here:
        reducer = REDUCERS.get(method)
        tuned = [
            c for c in cells.values() if c.axes["method"] == method and c.protocol == "finetune"
        ]
        zero = [
            c for c in cells.values() if c.axes["method"] == method and c.protocol == "zeroshot"
        ]
        ratios = {0.0} if reducer.is_reference else {0.5, 0.75}
        assert {c.axes["ratio"] for c in tuned} == ratios and len(tuned) == 3 * len(ratios)
        free = not reducer.trained and not reducer.is_reference
        assert len(zero) == (len(tuned) if free else 0), method
        for c in tuned:
            assert c.base_id in {b.cell_id for b in bases}
            if reducer.stage == "in_llm":  # the vision side is whole; the drop happens inside
                assert c.config.effective_ratio == 0.0 and c.config.pruning.ratio == c.axes["ratio"]


def test_a_tiny_reducer_zoo_runs_with_the_real_runner(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    args = [
        "grid=reducer_zoo",
        "grid.axes.method=[none,fastv]",
        "grid.axes.ratio=[0.75]",
        "grid.axes.seed=[0]",
        f"results_root={tmp_path / 'results'}",
        f"data.data_root={tmp_path / 'data'}",
        "backend=inline",
        "+grid.protocol.base.train.steps=2",
        "+grid.protocol.base.train.caption_steps=1",
        "+grid.protocol.finetune.train.steps=2",
        "data.synthetic_train=16",
        "data.synthetic_val=8",
        "train.batch_size=8",
        "eval.batch_size=8",
        "eval.efficiency_iters=1",
        "eval.efficiency_warmup=0",
    ]
    assert app.main(hydra_conf.compose_launch(args), args) == 0
    grid = tmp_path / "results" / "reducer_zoo"
    results = planned_results(grid)
    assert len(results) == 4  # base, unpruned fine-tune, FastV fine-tuned and zero-shot
    full = 8 * 16  # 8 frames of 4×4 windows at the tiny preset
    for name in ("jd-fastv-r0.75-l0-s0-ft", "jd-fastv-r0.75-l0-s0-zs"):
        eff = results[name]["efficiency"]
        assert (eff["vision_tokens_llm"], eff["vision_tokens_final"]) == (full, full // 4)
        assert eff["llm_kept_fraction"] == pytest.approx((2 + 2 * 0.25) / 4)
        assert eff["speedup_flops_analytic"] > 1.0
        for key in ("speedup_train_measured", "speedup_prefill_measured"):
            assert np.isfinite(eff[key]) and eff[key] > 0
        assert results[name]["display"]["method"]["stage"] == "in_llm"
    table = (grid / "_analysis" / "tables" / "efficiency.md").read_text()
    assert "in the LLM" in table and f"{full} → {full // 4}" in table
    assert (grid / "_analysis" / "figures" / f"{by_stage.NAME}.png").is_file()


# ---- tables and the figure from hand-made cells ----------------------------------------------
METHODS = {  # key: (label, short, order, stage, trained)
    "none": ("unpruned", "none", 0, "in_vit", False),
    "fewer_frames": ("fewer frames", "frames", 12, "pre_vit", False),
    "pool": ("spatial pool", "pool", 14, "post_vit", False),
    "scorer": ("STTS", "stts", 40, "in_vit", True),
    "fastv": ("FastV", "fastv", 200, "in_llm", False),
}


def _cells(methods=tuple(METHODS)) -> pd.DataFrame:
    rows = []
    for seed in (0, 1):
        for method in methods:
            label, short, order, stage, trained = METHODS[method]
            protocols = ["base", "finetune"] if method == "none" else ["finetune"]
            protocols += [] if trained or method == "none" else ["zeroshot"]
            for protocol in protocols:
                ratio = 0.0 if method == "none" else 0.5
                rows.append(
                    {
                        "grid": "g", "cell_id": f"{method}{seed}{protocol}",
                        "name": f"{method}-{seed}-{protocol}", "arch": "joint_decoder",
                        "method": method, "ratio": ratio, "layer": 0, "seed": seed,
                        "protocol": protocol, "state": "done", "cell_dir": None,
                        "method_label": label, "method_short": short, "method_order": order,
                        "method_is_reference": method == "none",
                        "method_uses_ground_truth": False, "method_stage": stage,
                        "method_trained": trained, "arch_label": "joint decoder",
                        "arch_short": "jd", "arch_order": 0,
                        "accuracy": 0.5 + 0.01 * order / 10 + 0.01 * seed,
                        "speedup_train_measured": 1.0 + order / 100,
                        "speedup_prefill_measured": 2.0 + order / 100,
                        "vision_tokens_llm": 64 if stage == "in_llm" else 32,
                        "vision_tokens_final": 32, "llm_kept_fraction": 0.75,
                        "total_gflops": 1.0,
                    }
                )  # fmt: skip
    return pd.DataFrame(rows)


def test_tables_group_methods_by_stage_in_pipeline_order():
    data = GridData.from_cells(Path("."), "g", _cells())
    shown, numeric = efficiency_table(data.agg)
    tuned = shown[shown["Protocol"] == "fine-tuned"]
    assert list(tuned["Method"]) == ["unpruned", "fewer frames", "STTS", "spatial pool", "FastV"]
    assert list(tuned["Stage"]) == [
        "–",
        "before the ViT",
        "in the ViT",
        "after the ViT",
        "in the LLM",
    ]
    fastv = tuned[tuned["Method"] == "FastV"].iloc[0]
    assert fastv["Vision tokens"] == "64 → 32" and fastv["Kept, layer avg (%)"] == "75"
    assert tuned[tuned["Method"] == "STTS"].iloc[0]["Vision tokens"] == "32"
    assert "llm_kept_fraction_mean" in numeric


def _drawn(monkeypatch, cells: pd.DataFrame, tmp_path):
    seen = {}
    monkeypatch.setattr(by_stage.style, "save", lambda fig, out, name: seen.setdefault("fig", fig))
    by_stage.make(GridData.from_cells(tmp_path, "g", cells), tmp_path)
    return seen["fig"]


def _points(ax) -> dict[str, tuple]:
    """label text → (x, colour, marker size, edge colour) of the point it annotates."""
    lines = [ln for ln in ax.get_lines() if ln.get_marker() not in (None, "None", "")]
    out = {}
    for text in ax.texts:
        x, y = text.xy
        line = next(ln for ln in lines if np.isclose(ln.get_xdata()[0], x))
        out[text.get_text()] = (x, line.get_color(), line.get_markersize(), line.get_mec())
    return out


def test_the_by_stage_figure_colours_by_stage_and_always_draws_the_baselines(monkeypatch, tmp_path):
    fig = _drawn(monkeypatch, _cells(), tmp_path)
    tuned, zero = fig.axes[0], fig.axes[1]
    assert "fine-tuned" in tuned.get_title() and "zero-shot" in zero.get_title()
    points = _points(tuned)
    assert set(points) == {"frames 50%", "pool 50%", "stts 50%", "fastv 50%"}
    assert points["fastv 50%"][0] == pytest.approx(3.0)  # fine-tuned: the train-step speed-up
    assert _points(zero)["fastv 50%"][0] == pytest.approx(4.0)  # zero-shot: the prefill one
    for text, stage in (("frames", "pre_vit"), ("stts", "in_vit"), ("pool", "post_vit")):
        assert points[f"{text} 50%"][1] == by_stage.STAGE_COLORS[stage]
    assert points["fastv 50%"][1] == by_stage.STAGE_COLORS["in_llm"]
    assert points["pool 50%"][2] > points["fastv 50%"][2] and points["pool 50%"][3] == "black"
    # the headline is the title; details such as the missing baselines go to the caption
    assert "baselines not in this grid" not in by_stage.style.caption_text(fig)
    fig = _drawn(monkeypatch, _cells(("none", "pool", "fastv")), tmp_path)
    assert "baselines not in this grid: fewer_frames" in by_stage.style.caption_text(fig)
