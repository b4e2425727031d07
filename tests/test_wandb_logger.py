"""JSONL + W&B run logger: offline files, disabled mode, fallback, mode resolution, ranks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.config.train import LoggingConfig
from core.io import read_jsonl
from core.training.logger import (
    CompositeLogger,
    RunLogger,
    make_logger,
    resolve_wandb_mode,
    wandb_config,
)

FLAT = {"pruning.ratio": 0.5, "fusion.arch": "mot", "pruning.method": "scorer_xyz"}


def _run(cell_dir, cfg, **kw):
    logger = make_logger(
        cfg, cell_dir, run_name="mot-scorer-0.5", cell_id="cellabc123", flat_config=FLAT, **kw
    )
    logger.log({"train/loss": 2.5, "train/lr": 1e-3}, step=10, phase="train")
    logger.log({"train/loss": 2.0, "train/lr": 9e-4}, step=20, phase="train")
    logger.log({"val/accuracy": 0.75}, step=20, phase="eval")
    logger.summary({"accuracy": 0.75})
    logger.finish()
    return logger


def _assert_jsonl(cell_dir):
    rows = read_jsonl(cell_dir / "metrics.jsonl")
    assert [(r["step"], r["phase"]) for r in rows] == [(10, "train"), (20, "train"), (20, "eval")]
    assert rows[0]["train/loss"] == 2.5 and rows[1]["train/lr"] == 9e-4
    assert rows[2]["val/accuracy"] == 0.75
    assert all(isinstance(r["time"], float) for r in rows)
    assert json.loads((cell_dir / "summary.json").read_text()) == {"accuracy": 0.75}


def _wait_for_wandb_files() -> None:
    """Block until wandb-core has written and closed every run's `.wandb` file.

    `run.finish()` returns once wandb-core has acknowledged the exit record, but offline the
    records are still in wandb-core's in-memory block buffer: the file holds only its 7-byte header
    until wandb-core closes the run's stream, which it does after the fire-and-forget
    "inform finish" message that `finish()` sends last. `wandb.teardown()` stops the service and
    waits for its process to exit, so every stream is closed (and its file complete) when it returns.
    """
    import wandb

    wandb.teardown()


def test_offline_run_writes_wandb_file_with_group_and_config(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    cell = tmp_path / "grid_x" / "cellabc123"
    cfg = LoggingConfig(wandb="online", group="sweepgroup_q7", tags=["mot"])
    logger = _run(cell, cfg, attempt=2)
    assert isinstance(logger, CompositeLogger) and len(logger.loggers) == 2
    _assert_jsonl(cell)
    _wait_for_wandb_files()
    files = list((cell / "wandb").rglob("*.wandb"))
    assert len(files) == 1, list((cell / "wandb").rglob("*"))
    assert files[0].parent.name.startswith("offline-run-")
    blob = files[0].read_bytes()
    assert b"sweepgroup_q7" in blob
    assert b"pruning/ratio" in blob and b"scorer_xyz" in blob
    assert b"cellabc123-a2" in blob  # offline id carries the attempt
    record = json.loads((cell / "wandb_run.json").read_text())
    assert record["mode"] == "offline" and record["id"] == "cellabc123-a2"
    assert record["group"] == "sweepgroup_q7" and record["name"] == "mot-scorer-0.5"


def test_offline_run_prints_one_line_with_its_sync_command_and_no_wandb_banner(
    tmp_path, monkeypatch, capfd
):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_SILENT", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    cell = tmp_path / "grid_x" / "cellquiet1"
    _run(cell, LoggingConfig(wandb="offline"), attempt=1)
    _wait_for_wandb_files()
    out = capfd.readouterr()
    lines = [ln for ln in (out.out + out.err).splitlines() if ln.strip()]
    record = json.loads((cell / "wandb_run.json").read_text())
    assert lines == [
        f"[mot-scorer-0.5] W&B offline run {record['run_dir']} (upload: wandb sync "
        f"{record['run_dir']})"
    ]
    assert Path(record["run_dir"]).is_dir() and Path(record["run_dir"]).parent == cell / "wandb"


def test_disabled_writes_jsonl_only(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    cell = tmp_path / "g" / "c"
    logger = _run(cell, LoggingConfig(wandb="disabled"))
    assert isinstance(logger, CompositeLogger) and len(logger.loggers) == 1
    _assert_jsonl(cell)
    assert not (cell / "wandb").exists()
    assert not (cell / "wandb_run.json").exists()


def test_env_wandb_mode_disabled_wins_over_config(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    cell = tmp_path / "g" / "c"
    _run(cell, LoggingConfig(wandb="offline"))
    assert not (cell / "wandb").exists()


def test_wandb_init_failure_falls_back_to_jsonl(tmp_path, monkeypatch):
    import wandb

    def broken_init(**kwargs):
        raise wandb.errors.UsageError("No API key configured")

    monkeypatch.setattr(wandb, "init", broken_init)
    monkeypatch.setenv("WANDB_MODE", "online")
    cell = tmp_path / "g" / "c"
    with pytest.warns(UserWarning, match="JSONL|metrics.jsonl"):
        logger = _run(cell, LoggingConfig())
    assert len(logger.loggers) == 1
    _assert_jsonl(cell)
    assert not (cell / "wandb_run.json").exists()


def test_online_init_arguments_and_no_secret_on_disk(tmp_path, monkeypatch):
    import wandb

    calls = {}

    class FakeRun:
        def __init__(self):
            self.logged, self.summary, self.finished = [], {}, None

        def define_metric(self, *a, **k):
            pass

        def log(self, d):
            self.logged.append(d)

        def finish(self, exit_code=0):
            self.finished = exit_code

    def fake_init(**kwargs):
        calls.update(kwargs)
        calls["run"] = FakeRun()
        return calls["run"]

    secret = "k" * 40
    monkeypatch.setattr(wandb, "init", fake_init)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_API_KEY", secret)
    cell = tmp_path / "mygrid" / "cellabc123"
    flat = {**FLAT, "data.prompt": f"leak {secret}"}
    logger = make_logger(
        LoggingConfig(wandb="auto", entity=""), cell, "n", "cellabc123", flat, attempt=3
    )
    logger.log({"train/loss": 1.0}, step=5)
    logger.finish(exit_code=1)
    assert calls["mode"] == "online" and calls["id"] == "cellabc123" and calls["resume"] == "allow"
    assert calls["group"] == "mygrid"  # no cfg.group: the grid folder name
    assert calls["entity"] is None and calls["dir"] == str(cell)
    assert calls["reinit"] == "finish_previous"
    assert calls["config"]["pruning/ratio"] == 0.5 and calls["config"]["cell_id"] == "cellabc123"
    assert all("." not in k for k in calls["config"])
    assert calls["config"]["data/prompt"] == "<redacted>"
    assert calls["run"].logged == [{"train/loss": 1.0, "step": 5}]
    assert calls["run"].finished == 1
    for path in cell.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


def test_non_zero_rank_gets_noop_logger(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    cell = tmp_path / "g" / "c"
    logger = make_logger(LoggingConfig(), cell, "n", "c", FLAT, rank=1)
    assert type(logger) is RunLogger
    logger.log({"train/loss": 1.0}, step=1)
    logger.finish()
    assert not cell.exists()


def test_resolve_mode():
    auto = LoggingConfig(wandb="auto")
    assert resolve_wandb_mode(auto, {}) == "offline"
    assert resolve_wandb_mode(auto, {"WANDB_API_KEY": "x"}) == "online"
    assert resolve_wandb_mode(LoggingConfig(wandb="disabled"), {"WANDB_API_KEY": "x"}) == "disabled"
    assert resolve_wandb_mode(LoggingConfig(wandb="online"), {"WANDB_MODE": "offline"}) == "offline"
    assert resolve_wandb_mode(auto, {"WANDB_MODE": "dryrun"}) == "offline"
    with pytest.raises(ValueError, match="WANDB_MODE"):
        resolve_wandb_mode(auto, {"WANDB_MODE": "sideways"})


def test_bad_phase_and_reserved_keys(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    logger = make_logger(LoggingConfig(), tmp_path, "n", "c", {})
    with pytest.raises(ValueError, match="phase"):
        logger.log({"x": 1}, step=1, phase="test")
    with pytest.raises(ValueError, match="reserved"):
        logger.log({"step": 1}, step=1)
    assert wandb_config({"a.b.c": 1}, cell_id="z") == {"a/b/c": 1, "cell_id": "z"}
