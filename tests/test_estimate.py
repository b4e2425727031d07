"""The dry run's wall-time estimate: one timing per distinct model, the cell's compute summed from
its steps, evaluation and side-by-side measurement, real steps timed on a real tiny model."""

from __future__ import annotations

import math

import pytest

from ablations import app, estimate, hydra_conf
from ablations.overrides import read_command_line
from core.cell import unpruned_config


def grid_cells(*overrides: str):
    cfg = hydra_conf.compose_launch(overrides)
    cli = read_command_line(cfg, overrides)
    return app.compose_cells(cfg, app.grid_spec(cfg, cli), cli)


def test_models_are_timed_once_and_seconds_add_up() -> None:
    cells = grid_cells("grid=prune_sweep")
    calls: list[str] = []

    def fake(cfg):
        calls.append(estimate.model_key(cfg))
        pruned = cfg.pruning.method != "none"
        return estimate.StepTimes(train_s=0.5 if pruned else 1.0, forward_s=0.1)

    out = estimate.estimate_wall_time(cells, timer=fake)
    assert len(calls) == len(set(calls)) == out["models_timed"]
    # seeds and protocols share a model: far fewer models than cells (33 cells, 6 models)
    assert out["models_timed"] == len({estimate.model_key(c.config) for c in cells}) < len(cells)
    expected = 0.0
    for cell in cells:
        cfg = cell.config
        times = fake(cfg)
        full = fake(unpruned_config(cfg))
        expected += estimate.cell_seconds(cfg, cell.steps, times, full)
    assert out["seconds"] == pytest.approx(expected)
    # a cell's seconds: its steps at the train step time dominate; zero-shot cells only evaluate
    ft = next(c for c in cells if c.name.endswith("-ft") and c.config.pruning.method == "random")
    zs = next(c for c in cells if c.name.endswith("-zs"))
    t = estimate.StepTimes(train_s=0.5, forward_s=0.1)
    u = estimate.StepTimes(train_s=1.0, forward_s=0.2)
    cfg = ft.config
    rounds = cfg.eval.efficiency_warmup + cfg.eval.efficiency_iters
    scale = cfg.eval.efficiency_batch_size / cfg.train.batch_size
    evals = estimate.eval_clips(cfg) / cfg.train.batch_size * 0.1
    assert estimate.cell_seconds(cfg, ft.steps, t, u) == pytest.approx(
        ft.steps * 0.5 + evals + rounds * scale * (0.5 + 1.0 + 0.1 + 0.2)
    )
    assert zs.steps == 0 and estimate.cell_seconds(zs.config, 0, t, u) < rounds * 2


def test_model_key_ignores_seed_but_not_shape() -> None:
    unpruned = [c for c in grid_cells("grid=prune_sweep") if c.config.pruning.method == "none"]
    assert len(unpruned) == 6  # three seeds, base and fine-tuned
    assert len({estimate.model_key(c.config) for c in unpruned}) == 1  # one model
    cfg = grid_cells("grid=smoke")[0].config
    fewer = grid_cells("grid=smoke", "data.max_frames=4")[0].config
    assert estimate.model_key(fewer) != estimate.model_key(cfg)  # negative control


@pytest.mark.parametrize("method", ["none", "oracle"])
def test_real_steps_are_timed_on_a_tiny_model(method: str) -> None:
    cells = grid_cells(
        "grid=smoke",
        "train.batch_size=2",
        f"grid.axes.method=[{method}]",
        f"data.ground_truth={method == 'oracle'}",
    )
    times = estimate.time_steps(cells[0].config, iters=1)
    assert times.forward_s > 0 and times.train_s > 0 and math.isfinite(times.train_s)
    line = estimate.describe(estimate.estimate_wall_time(cells[:1], timer=lambda c: times))
    assert line.startswith("estimated compute: ") and "distinct models timed here" in line
