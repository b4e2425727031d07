"""Launcher planning: grid expansion and exclusions, cell ids, overrides, axis collapse, bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.errors import MissingConfigException

from ablations import app, hydra_conf
from ablations.cells import CellError, CellSpec, training_free
from ablations.grid import GridError, GridSpec
from ablations.overrides import read_command_line
from core.config import ExperimentConfig

REPO = Path(__file__).resolve().parent.parent
GRIDS = hydra_conf.available("grid")


def plan_cells(*overrides: str) -> list[CellSpec]:
    cfg = hydra_conf.compose_launch(overrides)
    cli = read_command_line(cfg, overrides)
    spec = app.grid_spec(cfg, cli)
    return app.compose_cells(cfg, spec, cli)


def expected_count(spec: GridSpec) -> int:
    """`none` collapses ratio × layer; `oracle` needs synthetic data (the default); with a protocol
    each arch × seed adds its base, and each training-free method a zero-shot cell."""
    a = spec.axes
    per = len(a["arch"]) * len(a["seed"])
    pruned = [m for m in a["method"] if m != "none"]
    cells = ("none" in a["method"]) + len(pruned) * len(a["ratio"]) * len(a["layer"])
    if spec.protocol is None:
        return per * cells
    free = [m for m in pruned if training_free(m)] if spec.protocol.zeroshot else []
    grid_cells = cells + len(free) * len(a["ratio"]) * len(a["layer"])
    # each variant copies every (fine-tuned) cell of the methods it matches
    per_method = {m: 1 if m == "none" else len(a["ratio"]) * len(a["layer"]) for m in a["method"]}
    copies = sum(
        n for v in spec.variants for m, n in per_method.items() if v.match.matches({"method": m})
    )
    return per * (1 + grid_cells + copies)


def test_every_grid_file_is_listed() -> None:
    assert {"prune_sweep", "smoke", "arch_sweep", "layer_sweep"} <= set(GRIDS)


@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("scale", ["tiny", "paper"])
def test_grid_expansion_counts_and_exclusions(grid: str, scale: str) -> None:
    overrides = (f"grid={grid}", f"scale={scale}")
    cfg = hydra_conf.compose_launch(overrides)
    spec = app.grid_spec(cfg, read_command_line(cfg, overrides))
    cells = plan_cells(*overrides)
    assert len(cells) == expected_count(spec)
    assert len({c.cell_id for c in cells}) == len(cells)
    assert len({c.name for c in cells}) == len(cells)
    base_layer = cfg.pruning.prune_at
    for cell in cells:
        cfgx = cell.config
        assert cfgx.fusion.arch == cell.axes["arch"]
        assert cfgx.pruning.method == cell.axes["method"]
        assert cfgx.pruning.ratio == cell.axes["ratio"]
        assert cfgx.pruning.prune_at == cell.axes["layer"]
        assert cfgx.train.seed == cfgx.pruning.seed == cell.axes["seed"]
        if cell.axes["method"] == "none":
            assert cell.axes["ratio"] == 0.0 and cell.axes["layer"] == base_layer
        assert cfgx.data.ground_truth == (cell.axes["method"] == "oracle")
        assert cfgx.logging.group == spec.wandb_group


def test_tiny_counts() -> None:
    counts = {
        g: len(plan_cells(f"grid={g}"))
        for g in ("prune_sweep", "smoke", "arch_sweep", "layer_sweep", "stts_ablation")
    }
    # prune_sweep: 3 seeds × (base + 6 fine-tunes + 4 zero-shot: random, easy, heuristic, oracle);
    # stts_ablation: 3 seeds × (base + 3 fine-tunes + 3 aux/bias variants + 3 from scratch)
    assert counts == {
        "prune_sweep": 33,
        "smoke": 3,
        "arch_sweep": 20,
        "layer_sweep": 22,
        "stts_ablation": 30,
    }


def test_oracle_dropped_off_synthetic_data() -> None:
    cells = plan_cells("grid=prune_sweep", "data.dataset_name=webvid-10M")
    assert len(cells) == 3 * (1 + 5 + 3)
    assert "oracle" not in {c.axes["method"] for c in cells}


def test_tiny_scale_is_the_core_defaults_but_the_sweep_budget() -> None:
    cfg = hydra_conf.compose_launch(["grid=smoke"])
    sections = {name: app.plain(cfg[name]) for name in hydra_conf.section_defaults()}
    tiny = ExperimentConfig.from_dict(sections).flat()
    core = ExperimentConfig().flat()
    assert set(tiny) == set(core)
    assert {k for k in core if tiny[k] != core[k]} <= {
        "train.steps",
        "train.caption_steps",
        "train.warmup_steps",
    }


def test_cell_ids_stable_across_processes() -> None:
    ids = {c.name: c.cell_id for c in plan_cells("grid=smoke")}
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [
            sys.executable,
            str(REPO / "ablations" / "launch.py"),
            "grid=smoke",
            "dry_run=true",
            "results_root=/nonexistent/results",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
        check=True,
    ).stdout
    for name, cell_id in ids.items():
        assert f"{cell_id}   {name}" in out


def test_cell_ids_ignore_runtime_keys_and_follow_real_keys() -> None:
    base = {c.name: c.cell_id for c in plan_cells("grid=prune_sweep")}
    runtime = plan_cells(
        "grid=prune_sweep",
        "results_root=/elsewhere",
        "backend=local",
        "logging.wandb=disabled",
        "data.data_root=/other/data",
        "train.log_every=3",
    )
    assert {c.name: c.cell_id for c in runtime} == base
    changed = plan_cells("grid=prune_sweep", "train.steps=7")
    assert set(c.cell_id for c in changed).isdisjoint(base.values())  # negative control


def test_arch_override_collapses_the_arch_axis() -> None:
    cells = plan_cells("grid=arch_sweep", "arch=mot")
    assert {c.axes["arch"] for c in cells} == {"mot"}
    assert len(cells) == 5  # base + fine-tuned none, random, scorer + zero-shot random
    assert all(c.config.fusion.arch == "mot" for c in cells)
    moma = plan_cells("grid=smoke", "arch=moma")
    assert all(c.config.fusion.arch == "moma" and c.name.startswith("moma-") for c in moma)


def test_experiment_key_on_an_axis_collapses_it() -> None:
    cells = plan_cells("grid=smoke", "pruning.method=scorer")
    assert [c.name for c in cells] == ["jd-scorer-r0.5-l1-s0"]
    tuned = plan_cells("grid=prune_sweep", "pruning.method=scorer")  # its bases stay
    assert [c.name for c in tuned] == [
        *(f"jd-none-r0-l0-s{s}-base" for s in range(3)),
        *(f"jd-scorer-r0.5-l0-s{s}-ft" for s in range(3)),
    ]
    ratio = plan_cells("grid=prune_sweep", "pruning.ratio=0.3")
    assert {c.axes["ratio"] for c in ratio} == {0.0, 0.3}  # none keeps its pinned 0
    assert len(ratio) == 3 * (1 + 6 + 4)


def test_grid_axis_override_and_scale_precedence() -> None:
    # per seed: base + (none + 5 methods × 3 ratios) fine-tuned + 4 training-free × 3 zero-shot
    assert len(plan_cells("grid=prune_sweep", "grid.axes.ratio=[0.3,0.5,0.8]")) == 3 * 29
    paper = plan_cells(
        "grid=prune_sweep", "scale=paper", "grid.axes.seed=[5]", "grid.axes.arch=[joint_decoder]"
    )
    assert {c.axes["seed"] for c in paper} == {5}
    assert {c.axes["ratio"] for c in paper} == {0.0, 0.3, 0.5, 0.7, 0.9}  # from scales.paper
    assert paper[0].config.data.frame_size == 378


def test_command_line_beats_grid_fixed() -> None:
    assert {c.config.train.steps for c in plan_cells("grid=smoke")} == {6}
    cells = plan_cells("grid=smoke", "train.steps=50")
    assert {c.config.train.steps for c in cells} == {50}
    assert all(c.overrides["train.steps"] == 50 for c in cells)


def test_frozen_config_has_sections_and_cell_block() -> None:
    cell = plan_cells("grid=smoke")[1]
    frozen = cell.frozen()
    assert set(frozen) == {
        "data",
        "vision",
        "connector",
        "lm",
        "fusion",
        "pruning",
        "train",
        "eval",
        "logging",
        "cell",
    }
    assert frozen["cell"]["cell_id"] == cell.cell_id
    assert frozen["cell"]["axes"] == cell.axes
    assert os.path.isabs(frozen["data"]["data_root"])
    rebuilt = ExperimentConfig.from_dict({k: v for k, v in frozen.items() if k != "cell"})
    assert rebuilt.identity_hash() == cell.cell_id


def test_unknown_grid_lists_the_available_ones(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(MissingConfigException) as err:
        hydra_conf.compose_launch(["grid=prune_swep"])
    assert "prune_sweep" in str(err.value) and "smoke" in str(err.value)
    cfg = hydra_conf.compose_launch([])
    assert app.main(cfg, []) == 2
    assert "prune_sweep" in capsys.readouterr().out


def test_unknown_axis_value_names_cell_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    overrides = ["grid=smoke", "grid.axes.method=[none,scorr]", f"results_root={tmp_path}"]
    cfg = hydra_conf.compose_launch(overrides)
    assert app.main(cfg, overrides) == 2
    out = capsys.readouterr().out
    assert "jd-scorr-r0.5-l1-s0" in out and "pruning.method='scorr'" in out
    assert "Did you mean 'scorer'" in out
    assert not any(tmp_path.iterdir())  # refused before anything was written
    with pytest.raises(CellError, match=r"(?s)fusion.arch='xattn'.*xattn-none"):
        plan_cells("grid=smoke", "grid.axes.arch=[xattn]")


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("train.stepz=5", "train.stepz: unknown key. Fix: did you mean train.steps?"),
        ("train.steps=abc", "train.steps='abc': expected an integer."),
    ],
)
def test_a_bad_override_is_reported_once_with_the_cells_it_breaks(override, expected) -> None:
    with pytest.raises(CellError) as info:
        plan_cells("grid=prune_sweep", override)
    message = str(info.value)
    assert message.count(expected) == 1  # once, not once per cell
    assert "18 cell(s): jd-none-r0-l0-s0-base" in message and "and 15 more" in message
    # different problems stay separate lines (negative control)
    with pytest.raises(CellError) as info:
        plan_cells("grid=smoke", "grid.axes.method=[none,scorr,randm]")
    message = str(info.value)
    assert "'scorr'" in message and "'randm'" in message and message.count("(1 cell(s)") == 2


def test_override_breaking_the_token_budget_is_refused() -> None:
    with pytest.raises(CellError, match=r"(?s)3 invalid cell.*token budget.*jd-none-r0-l0-s0"):
        plan_cells("grid=smoke", "data.max_frames=64")
    # cross-attention keeps visual tokens out of the residual stream: same frames are fine there
    assert len(plan_cells("grid=smoke", "data.max_frames=64", "arch=cross_attention")) == 3


def test_bad_grid_content_is_refused() -> None:
    good = {
        "name": "g",
        "axes": {"arch": ["mot"], "method": ["none"], "ratio": [0.5], "layer": [1], "seed": [0]},
    }
    GridSpec.from_dict(good)
    cases = [
        ({"axes": {**good["axes"], "ratios": [0.5]}}, "grid.axes.ratios: unknown axis"),
        ({"axes": {**good["axes"], "ratio": []}}, "grid.axes.ratio is empty"),
        ({"axes": {**good["axes"], "layer": ["one"]}}, r"grid.axes.layer\[0\]='one'"),
        ({"fixed": {"trian.steps": 3}}, "grid.fixed.trian.steps: not an experiment key"),
        ({"exclude": [{"match": {"methods": "none"}}]}, "match.methods: unknown axis"),
        ({"resources": {"gpu": 1}}, "grid.resources.gpu: unknown key"),
        ({"sweep": 1}, "grid.sweep: unknown key"),
    ]
    for patch, message in cases:
        with pytest.raises(GridError, match=message):
            GridSpec.from_dict({**good, **patch})
