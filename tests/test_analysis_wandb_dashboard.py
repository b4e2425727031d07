"""W&B dashboards, offline and without network: the grid's analysis run (job type, group, the
efficiency–accuracy table, the figures), when it is made, and each cell's keep-map image."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.data import GridData
from analysis.tables import efficiency_table
from analysis.wandb_log import resolve_mode
from core.diagnostics import keep_map_image
from core.results import WANDB_RECORD
from core.training.logger import CompositeLogger, JsonlLogger, WandbLogger
from paper_figures.report import write_report
from tests.results_fixture import build_results_tree, clip_frames, keep_mask, write_keep_example


def logged(modes: list[str | None]) -> pd.DataFrame:
    return pd.DataFrame({"wandb_run_mode": modes})


@pytest.mark.parametrize(
    ("requested", "cells", "env", "expected"),
    [
        ("auto", [None, None], {"WANDB_MODE": "offline"}, "disabled"),  # cells never logged
        ("auto", ["offline", None], {}, "offline"),
        ("auto", ["offline"], {"WANDB_API_KEY": "k"}, "online"),
        ("auto", ["online"], {"WANDB_MODE": "disabled", "WANDB_API_KEY": "k"}, "disabled"),
        ("offline", [None], {}, "offline"),
        ("online", [None], {"WANDB_MODE": "offline"}, "offline"),
        ("disabled", ["online"], {}, "disabled"),
    ],
)
def test_mode_follows_the_cells_and_the_environment(requested, cells, env, expected):
    assert resolve_mode(requested, logged(cells), env) == expected


def test_unknown_mode_is_named():
    with pytest.raises(ValueError, match="wandb_log='on'.*auto, online, offline, disabled"):
        resolve_mode("on", logged([None]), {})


def _wandb_done() -> None:
    import wandb

    wandb.teardown()  # flush and close the offline run's files


def test_grid_analysis_run_offline_holds_the_table_and_figures(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    tree = build_results_tree(tmp_path / "results")
    grid = tree.root / "prune_sweep"
    for cell in grid.iterdir():  # the cells logged offline to project "proj"
        if (cell / "result.json").is_file():
            (cell / WANDB_RECORD).write_text(json.dumps({"mode": "offline", "project": "proj"}))
    out = tmp_path / "out"
    logs: list[str] = []
    paths = write_report(tree.root, "prune_sweep", out, log=logs.append)
    _wandb_done()
    record = json.loads(paths["wandb_record"].read_text())
    assert (record["mode"], record["job_type"], record["group"]) == (
        "offline",
        "analysis",
        "prune_sweep",
    )
    assert record["project"] == "proj"
    run_dir = Path(record["run_dir"])
    assert run_dir.is_dir() and out / "wandb" in run_dir.parents
    assert list(run_dir.glob("*.wandb")) and any("wandb sync" in line for line in logs)
    media = run_dir / "files" / "media"
    images = sorted(p.name.rsplit("_", 2)[0] for p in (media / "images" / "figures").glob("*.png"))
    figures = sorted(
        k.removeprefix("figure_").removesuffix("_png") for k in paths if k.endswith("_png")
    )
    assert images == figures and len(figures) == 8  # each figure once, under its own name
    tables = {p.name.split("_")[0]: p for p in (media / "table").glob("*.table.json")}
    shown, _ = efficiency_table(GridData.load(tree.root, "prune_sweep").agg)
    table = json.loads(tables["efficiency"].read_text())
    assert table["columns"] == list(shown.columns)
    assert [row[0] for row in table["data"]] == [str(v) for v in shown.iloc[:, 0]]
    cells = json.loads(tables["cells"].read_text())
    assert len(cells["data"]) == len(GridData.load(tree.root, "prune_sweep").cells)


def test_no_analysis_run_when_the_cells_never_logged(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    tree = build_results_tree(tmp_path / "results")
    from analysis.report import write_grid_outputs

    paths = write_grid_outputs(tree.root, "arch_sweep", tmp_path / "out", wandb_log="auto")
    assert "wandb_record" not in paths and not (tmp_path / "out" / "wandb").exists()


def test_keep_map_image_dims_exactly_the_dropped_windows(tmp_path):
    path = tmp_path / "keep_example.npz"
    write_keep_example(path, "scorer", 0.5)
    image = keep_map_image(path)
    frames, keep = clip_frames(), keep_mask("scorer", 0.5)
    n, size = frames.shape[:2]
    assert image.shape == (size, n * size, 3) and image.dtype == np.uint8
    cell = size // keep.shape[1]
    for f in range(n):
        for i in range(keep.shape[1]):
            for j in range(keep.shape[2]):
                window = np.s_[
                    i * cell : (i + 1) * cell, f * size + j * cell : f * size + (j + 1) * cell
                ]
                orig = frames[f, i * cell : (i + 1) * cell, j * cell : (j + 1) * cell]
                want = orig if keep[f, i, j] else np.round(orig * 0.25).astype(np.uint8)
                assert np.array_equal(image[window], want), (f, i, j)


class RecordingRun:
    def __init__(self) -> None:
        self.logged: list[dict] = []

    def define_metric(self, *args, **kwargs) -> None:
        pass

    def log(self, d: dict) -> None:
        self.logged.append(d)


def test_cell_logger_sends_the_keep_map_to_wandb_as_an_image(tmp_path):
    import wandb

    run = RecordingRun()
    logger = CompositeLogger([JsonlLogger(tmp_path / "metrics.jsonl"), WandbLogger(run)])
    strip = np.zeros((8, 16, 3), dtype=np.uint8)
    logger.image("diagnostics/keep_map", strip, step=40, caption="scorer at 0.5")
    (sent,) = run.logged
    assert sent["step"] == 40 and isinstance(sent["diagnostics/keep_map"], wandb.Image)
    assert sent["diagnostics/keep_map"]._caption == "scorer at 0.5"
    assert (
        not (tmp_path / "metrics.jsonl").exists()
        or "keep_map" not in (tmp_path / "metrics.jsonl").read_text()
    )


def test_a_mirror_failing_half_way_leaves_the_report_and_says_so(tmp_path, monkeypatch):
    import wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    tree = build_results_tree(tmp_path / "results")
    data = GridData.load(tree.root, "arch_sweep")

    def broken_table(*args, **kwargs):
        raise TypeError("unsupported column type")

    monkeypatch.setattr(wandb, "Table", broken_table)
    from analysis.wandb_log import log_grid

    logs: list[str] = []
    assert log_grid(data, tmp_path / "out", {}, "offline", log=logs.append) is None
    _wandb_done()
    assert not (tmp_path / "out" / WANDB_RECORD).exists()
    assert len(logs) == 1 and "failed while logging" in logs[0] and "unsupported" in logs[0]


def test_keep_map_image_of_a_clip_with_no_real_frame_shows_it_whole(tmp_path):
    path = tmp_path / "keep_example.npz"
    frames, keep = clip_frames(), keep_mask("random", 0.5)
    np.savez(path, frames=frames, keep=keep, frame_mask=np.zeros(len(frames), bool))
    assert keep_map_image(path).shape == (frames.shape[1], len(frames) * frames.shape[2], 3)
    np.savez(path, frames=frames, keep=keep, frame_mask=np.arange(len(frames)) < 2)
    assert keep_map_image(path).shape == (frames.shape[1], 2 * frames.shape[2], 3)
