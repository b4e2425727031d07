"""End-to-end tests of the experiment cell runner (`core.cell.run_cell`) on a tiny QA dataset
(tests/cell_fixtures.py). Interruptions are injected through the cell's training callbacks; the
final weights are those of the checkpoint written at the end of training, before evaluation.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from core.cell import CellRun, run_cell
from core.config import ExperimentConfig
from core.io import read_json, read_yaml
from core.models.vlm import VideoVLM
from core.results import git_commit, read_status
from core.training.batches import ResumableBatchSampler
from core.training.checkpoint import load_checkpoint
from core.training.trainer import NonFiniteLoss, TrainCallback, TrainState
from tests.cell_fixtures import (
    BATCH,
    N_TRAIN,
    N_VAL,
    InterruptAfter,
    InterruptAfterTraining,
    Preempted,
    cell_config,
    edit_config,
    final_weights,
    make_cell,
    same_weights,
    train_rows,
    write_dataset,
)


@pytest.fixture(autouse=True)
def _restore_torch_globals() -> Iterator[None]:
    """Cells set the thread count and deterministic mode process-wide; put them back."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic)


@pytest.fixture(autouse=True)
def _no_wandb_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """WANDB_MODE in the environment overrides logging.wandb; keep the config in charge."""
    monkeypatch.delenv("WANDB_MODE", raising=False)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("data"), "tinyqa")


@pytest.fixture(scope="module")
def reference(
    data_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, Any], dict[str, torch.Tensor]]:
    """One uninterrupted 6-step cell with efficiency measurement: (dir, result, final weights)."""
    sections = cell_config(
        data_root,
        "tinyqa",
        eval={"measure_efficiency": True, "efficiency_batch_size": 2, "efficiency_warmup": 0},
    )
    cell_dir = make_cell(tmp_path_factory.mktemp("results") / "ref", sections)
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("WANDB_MODE", raising=False)
        result = run_cell(cell_dir)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic)
    assert load_checkpoint(cell_dir / "checkpoints" / "last.pt")["step"] == 6
    return cell_dir, result, final_weights(cell_dir)


# ---- 1. resume equivalence --------------------------------------------------------------------
def test_interrupted_cell_resumes_to_the_same_result(
    reference: tuple[Path, dict[str, Any], dict[str, torch.Tensor]],
    data_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ref_dir, ref_result, ref_weights = reference
    sections = read_yaml(ref_dir / "config.yaml")
    sections.pop("cell")
    cell_dir = make_cell(tmp_path / "cell", sections)

    with pytest.raises(Preempted):
        run_cell(cell_dir, callbacks=[InterruptAfter(5)])
    assert not (cell_dir / "result.json").exists()
    status = read_status(cell_dir)
    assert status["state"] == "failed" and status["attempts"] == 1
    assert "Preempted" in status["error"] and status["failed_step"] == 5
    assert load_checkpoint(cell_dir / "checkpoints" / "last.pt")["step"] == 4

    result = run_cell(cell_dir)
    status = read_status(cell_dir)
    assert status["state"] == "done" and status["attempts"] == 2
    # Attempt 1 logged steps 1-5; attempt 2 restarted from the step-4 checkpoint, not from 0, and
    # its re-done step 5 replaced attempt 1's row: every step is logged once.
    rows = train_rows(cell_dir)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    ref_rows = {r["step"]: r for r in train_rows(ref_dir)}
    for r in rows:
        assert r["train/loss"] == pytest.approx(ref_rows[r["step"]]["train/loss"], rel=1e-6)

    for key in ("train_loss", "val_loss", "accuracy"):
        assert result["metrics"][key] == pytest.approx(ref_result["metrics"][key], rel=1e-6), key
    assert result["metrics"]["accuracy_by_type"] == ref_result["metrics"]["accuracy_by_type"]
    assert same_weights(final_weights(cell_dir), ref_weights)

    # Negative control: another seed (other init and batch order) ends elsewhere.
    other = make_cell(tmp_path / "seed1", {**sections, "train": {**sections["train"], "seed": 1}})
    run_cell(other)
    assert not same_weights(final_weights(other), ref_weights)
    other_loss = read_json(other / "result.json")["metrics"]["val_loss"]
    assert other_loss != pytest.approx(ref_result["metrics"]["val_loss"], rel=1e-4)


def test_a_cell_killed_after_training_resumes_at_evaluation_without_retraining(
    reference: tuple[Path, dict[str, Any], dict[str, torch.Tensor]], tmp_path: Path
) -> None:
    ref_dir, ref_result, ref_weights = reference
    sections = read_yaml(ref_dir / "config.yaml")
    sections.pop("cell")
    cell_dir = make_cell(tmp_path / "cell", sections)
    with pytest.raises(Preempted):
        run_cell(cell_dir, callbacks=[InterruptAfterTraining()])
    assert load_checkpoint(cell_dir / "checkpoints" / "last.pt")["step"] == 6  # final checkpoint
    logged = [r["step"] for r in train_rows(cell_dir)]
    result = run_cell(cell_dir)
    assert [r["step"] for r in train_rows(cell_dir)] == logged == [1, 2, 3, 4, 5, 6]
    assert same_weights(final_weights(cell_dir), ref_weights)
    for key in ("val_loss", "accuracy", "train_loss"):
        assert result["metrics"][key] == pytest.approx(ref_result["metrics"][key], rel=1e-6), key


# ---- 2. result.json: contents, written last, never redone -------------------------------------
def test_result_json_is_complete_written_last_and_not_redone(
    reference: tuple[Path, dict[str, Any], dict[str, torch.Tensor]],
) -> None:
    cell_dir, result, _ = reference
    on_disk = read_json(cell_dir / "result.json")
    assert on_disk == result
    meta = read_yaml(cell_dir / "config.yaml")["cell"]
    cfg = ExperimentConfig.from_dict(
        {k: v for k, v in read_yaml(cell_dir / "config.yaml").items() if k != "cell"}
    )
    assert result["cell_id"] == meta["cell_id"] == cfg.identity_hash()
    assert (result["grid"], result["name"], result["axes"]) == ("tinygrid", "tiny", {"seed": 0})
    assert result["config"] == cfg.flat()

    m = result["metrics"]
    assert 0.0 <= m["accuracy"] <= 1.0 and set(m["accuracy_by_type"]) == {"colour", "count"}
    assert m["count_by_type"] == {"colour": 2, "count": 2}
    # Chance from the options: 1/2 for colour rows, 1/3 for count rows, overall their row mean.
    assert m["chance_by_type"] == pytest.approx({"colour": 1 / 2, "count": 1 / 3})
    assert m["chance"] == pytest.approx((1 / 2 + 1 / 3) / 2)
    assert np.isfinite(m["train_loss"]) and np.isfinite(m["val_loss"])
    assert (m["eval_samples"], m["bad_samples"], m["skipped_batches"]) == (4, 0, 0)
    assert m["caption_loss"] is None

    e = result["efficiency"]
    # 2 frames × (4×4 patches pooled 2×2 → 4 tokens) = 8; the scorer removes a quarter.
    assert (e["vision_tokens_full"], e["vision_tokens_llm"]) == (8, 6)
    assert e["kept_fraction"] == pytest.approx(0.75)
    for key in ("vit_gflops", "reducer_gflops", "llm_gflops", "total_gflops"):
        assert e[key] > 0, key
    assert e["total_gflops"] >= e["vit_gflops"] + e["llm_gflops"]
    for key in ("train_step_s", "prefill_latency_s", "forward_backward_s", "peak_memory_mb"):
        assert e[key] > 0, key
    # Speed-ups measured side by side against the unpruned model of the same geometry.
    for kind in ("train", "prefill"):
        q1, median, q3 = (e[f"speedup_{kind}_measured{s}"] for s in ("_q1", "", "_q3"))
        assert 0 < q1 <= median <= q3, kind
    assert e["unpruned_forward_backward_s"] > 0 and e["unpruned_prefill_latency_s"] > 0
    # here the STTS scorer costs more than pruning a quarter of 8 tokens saves: < 1 is honest
    assert 0 < e["speedup_flops_analytic"] < 1
    assert e["measured_over_analytic"] == pytest.approx(
        e["speedup_train_measured"] / e["speedup_flops_analytic"]
    )
    assert e["timing_pairs"] == 5
    assert e["memory_method"] in ("vmhwm", "rss_sampling")
    assert result["hardware"]["device"] == "cpu" and result["hardware"]["threads"] == 1
    assert result["hardware"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    env = result["environment"]
    assert env["torch"] == torch.__version__ and {"pyav", "libavcodec", "numpy"} <= set(env)
    assert result["data"]["dataset"] == "tinyqa" and len(result["data"]["manifest_sha256"]) == 64
    t = result["timing"]
    assert 0 < t["train_s"] <= t["wall_s"] and 0 < t["eval_s"] <= t["wall_s"]
    assert result["git_commit"] == git_commit() == read_status(cell_dir)["git_commit"]

    # Written last (only status.json's "done" follows it) and atomically (no temp file left).
    done_at = (cell_dir / "result.json").stat().st_mtime_ns
    others = [
        p
        for p in cell_dir.rglob("*")
        if p.is_file() and p.name not in ("result.json", "status.json")
    ]
    assert {p.name for p in others} >= {"metrics.jsonl", "last.pt", "keep_example.npz"}
    assert all(p.stat().st_mtime_ns <= done_at for p in others)
    assert not [p for p in cell_dir.rglob("*.tmp")]

    # A finished cell is returned as is: nothing retrained, rewritten or re-attempted.
    lines = (cell_dir / "metrics.jsonl").read_text()
    status = read_status(cell_dir)
    assert run_cell(cell_dir) == result
    assert (cell_dir / "result.json").stat().st_mtime_ns == done_at
    assert (cell_dir / "metrics.jsonl").read_text() == lines
    assert read_status(cell_dir) == status and status["attempts"] == 1


# ---- 3. non-finite loss -----------------------------------------------------------------------
def test_nan_loss_fails_the_cell_and_keeps_the_last_good_checkpoint(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nan_step = 3  # 0-based index of the poisoned batch; checkpoints land after steps 2 and 4
    real_forward = VideoVLM.forward

    def forward(self: VideoVLM, batch: dict, step: int = 0) -> Any:
        out = real_forward(self, batch, step)
        if self.training and step == nan_step:
            out.loss = out.loss * float("nan")
        return out

    cell_dir = make_cell(tmp_path / "cell", cell_config(data_root, "tinyqa"))
    with monkeypatch.context() as mp:
        mp.setattr(VideoVLM, "forward", forward)
        with pytest.raises(NonFiniteLoss, match=f"non-finite loss nan at step {nan_step}"):
            run_cell(cell_dir)
    assert not (cell_dir / "result.json").exists()
    status = read_status(cell_dir)
    assert status["state"] == "failed" and status["failed_step"] == nan_step
    assert "non-finite loss" in status["error"]
    assert [r["step"] for r in train_rows(cell_dir)] == [1, 2, 3]  # nothing logged after it
    ck = load_checkpoint(cell_dir / "checkpoints" / "last.pt")
    assert ck["step"] == 2 < nan_step
    assert all(torch.isfinite(v).all() for v in ck["model"].values() if v.is_floating_point())

    # The kept checkpoint is usable: with the fault gone, the cell resumes from it and finishes.
    result = run_cell(cell_dir)
    assert [r["step"] for r in train_rows(cell_dir)] == [1, 2, 3, 4, 5, 6]
    assert read_status(cell_dir)["state"] == "done" and np.isfinite(result["metrics"]["val_loss"])


# ---- 4. undecodable clips ---------------------------------------------------------------------
def test_all_bad_batches_are_skipped_and_counted(tmp_path: Path) -> None:
    steps, seed = 4, 0
    sampler = ResumableBatchSampler(N_TRAIN, BATCH, seed, 0, steps)
    bad_train = set(sampler.indices(0))  # the whole first batch is garbage
    batches = [set(sampler.indices(s)) for s in range(steps)]
    expected_skips = sum(b <= bad_train for b in batches)
    assert 1 <= expected_skips < steps and any(b & bad_train and b - bad_train for b in batches)
    root = write_dataset(tmp_path / "data", "badqa", bad_train=bad_train, bad_val={1})
    sections = cell_config(root, "badqa", train={"steps": steps, "seed": seed})
    cell_dir = make_cell(tmp_path / "cell", sections)

    result = run_cell(cell_dir)
    m = result["metrics"]
    assert m["skipped_batches"] == expected_skips
    assert (m["bad_samples"], m["eval_samples"]) == (1, N_VAL)  # the bad val clip counts as wrong
    assert m["accuracy"] <= (N_VAL - 1) / N_VAL
    assert np.isfinite(m["train_loss"]) and np.isfinite(m["val_loss"])
    rows = train_rows(cell_dir)
    assert rows[-1]["train/skipped_batches"] == expected_skips
    assert read_status(cell_dir)["state"] == "done"


# ---- 5. resuming under a changed config -------------------------------------------------------
def test_resume_with_changed_config_is_refused_naming_the_keys(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cell_dir = make_cell(tmp_path / "cell", cell_config(data_root, "tinyqa"))
    with pytest.raises(Preempted):
        run_cell(cell_dir, callbacks=[InterruptAfter(5)])

    edit_config(cell_dir, "train", lr=1e-2, log_every=2)
    with pytest.raises(ValueError, match="refusing to resume") as err:
        run_cell(cell_dir)
    named = re.search(r"checkpoint \(([^)]*)\)", str(err.value)).group(1)
    assert named == "train.lr"  # log_every is a runtime key: not a change of the experiment
    status = read_status(cell_dir)
    assert status["state"] == "failed" and "train.lr" in status["error"]
    assert not (cell_dir / "result.json").exists()

    # Negative control: with lr restored, the runtime-only change resumes from step 4.
    edit_config(cell_dir, "train", lr=3e-3)
    run_cell(cell_dir)
    # resumed at step 4; the re-done steps log every 2 steps now (log_every=2)
    assert [r["step"] for r in train_rows(cell_dir)] == [1, 2, 3, 4, 6]
    status = read_status(cell_dir)
    assert status["state"] == "done" and status["attempts"] == 3


# ---- 6. W&B offline ---------------------------------------------------------------------------
def test_offline_wandb_run_carries_config_cell_id_and_group(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb_env"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    sections = cell_config(
        data_root,
        "tinyqa",
        train={"steps": 2, "lr": 0.00123},
        logging={"wandb": "offline", "project": "celltest"},
    )
    # The grid folder is named differently from the grid, so the group must come from the cell.
    cell_dir = make_cell(tmp_path / "results" / "folder" / "c", sections, grid="gridq7")
    cell_id = read_yaml(cell_dir / "config.yaml")["cell"]["cell_id"]
    run_cell(cell_dir)
    import wandb

    wandb.teardown()  # run.finish() returns before wandb-core has flushed the offline .wandb file

    record = read_json(cell_dir / "wandb_run.json")
    assert record["mode"] == "offline" and record["group"] == "gridq7"
    assert record["id"] == f"{cell_id}-a1" and record["name"] == "tiny"
    files = list(cell_dir.rglob("*.wandb")) + list((tmp_path / "wandb_env").rglob("*.wandb"))
    assert len(files) == 1, files
    blob = files[0].read_bytes()
    for needle in ("gridq7", f"{cell_id}-a1", "celltest", "train/lr", "0.00123", "cell_id"):
        assert needle.encode() in blob, needle
    assert cell_id.encode() in blob and b"val/accuracy" in blob and b"train/loss" in blob
    assert b"diagnostics/keep_map" in blob  # the keep map, as an image in the run's media
    (keep_map,) = files[0].parent.glob("files/media/images/diagnostics/keep_map*.png")
    assert keep_map.read_bytes()[:4] == b"\x89PNG"
    assert read_status(cell_dir)["state"] == "done"


# ---- 7. caption pre-training ------------------------------------------------------------------
def test_caption_phase_runs_before_the_task(data_root: Path, tmp_path: Path) -> None:
    sections = cell_config(data_root, "tinyqa", train={"steps": 2, "caption_steps": 2})
    cell_dir = make_cell(tmp_path / "cell", sections)
    result = run_cell(cell_dir)
    rows = train_rows(cell_dir)
    assert [(r["step"], r["train/task"]) for r in rows] == [
        (1, "caption"),
        (2, "caption"),
        (3, "qa"),
        (4, "qa"),
    ]
    assert 0.0 <= result["metrics"]["accuracy"] <= 1.0


# ---- 8. the protocol: a fine-tune cell starts from its base ----------------------------------
class StartWeights(TrainCallback):
    """The model's weights when training begins (after initialisation and any resume)."""

    def __init__(self) -> None:
        self.weights: dict[str, torch.Tensor] = {}

    def on_train_begin(self, state: TrainState, model: torch.nn.Module) -> None:
        self.weights = {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_a_fine_tune_cell_starts_from_exactly_its_base_weights_reducer_excepted(
    data_root: Path, tmp_path: Path
) -> None:
    grid = tmp_path / "grid"
    base_sections = cell_config(data_root, "tinyqa", pruning={"method": "none", "ratio": 0.0})
    base_dir = make_cell(grid / "base0", base_sections)
    run_cell(base_dir)
    base_weights = final_weights(base_dir)
    assert not any(".reducer." in k for k in base_weights)

    tuned = cell_config(data_root, "tinyqa", train={"init_cell": "base0", "steps": 2})
    tuned_dir = make_cell(grid / "tuned", tuned)
    start = StartWeights()
    result = run_cell(tuned_dir, callbacks=[start])
    reducer = [k for k in start.weights if ".reducer." in k]
    assert reducer and set(start.weights) - set(reducer) == set(base_weights)
    for key, value in base_weights.items():
        assert torch.equal(start.weights[key], value), key
    run = CellRun(tuned_dir)
    torch.manual_seed(run.cfg.train.seed)
    fresh = VideoVLM(run.cfg, run.build_data().vocab_size).state_dict()
    for key in reducer:  # the reducer starts from its fresh (seeded) initialisation
        assert torch.equal(start.weights[key], fresh[key]), key
    assert result["init"]["cell"] == "base0" and result["init"]["step"] == 6

    # The base id is part of the cell's identity; a missing base stops the cell before training.
    other = ExperimentConfig.from_dict(cell_config(data_root, "tinyqa", train={"init_cell": "b1"}))
    assert other.identity_hash() != ExperimentConfig.from_dict(tuned).identity_hash()
    orphan = make_cell(grid / "orphan", cell_config(data_root, "tinyqa", train={"init_cell": "b1"}))
    with pytest.raises(
        FileNotFoundError, match=r"train.init_cell=b1: its base cell .* not finished"
    ):
        run_cell(orphan)
    assert not train_rows(orphan)


@pytest.mark.parametrize(
    ("split", "n", "bad"),
    [
        ("training", N_TRAIN, {"bad_train": range(N_TRAIN)}),
        ("validation", N_VAL, {"bad_val": range(N_VAL)}),
    ],
)
def test_a_cell_with_no_valid_clip_fails_with_the_reason(
    split: str, n: int, bad: dict[str, range], tmp_path: Path
) -> None:
    """Trained on no valid batch, or evaluated no valid clip: failed, naming the count and the
    first clip's error, and no result.json."""
    root = write_dataset(tmp_path / "data", "allbad", **bad)
    cell_dir = make_cell(tmp_path / "cell", cell_config(root, "allbad", train={"steps": 2}))
    with pytest.raises(RuntimeError, match=f"no decodable {split} clips: {n}/{n} bad; first: "):
        run_cell(cell_dir)
    status = read_status(cell_dir)
    first = "train0.mp4" if split == "training" else "validation0.mp4"
    assert status["state"] == "failed" and first in status["error"]
    assert not (cell_dir / "result.json").exists()


def test_a_bad_clip_share_above_the_threshold_is_flagged_in_the_result(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "data", "somebad", bad_val={0})
    flagged = cell_config(root, "somebad", train={"steps": 2, "seed": 0})
    result = run_cell(make_cell(tmp_path / "flagged", flagged))
    assert any(f"1/{N_VAL} validation clips undecodable" in w for w in result["warnings"])
    tolerant = cell_config(root, "somebad", train={"steps": 2, "seed": 0})
    tolerant["eval"] = {**tolerant.get("eval", {}), "max_bad_fraction": 0.5}
    result = run_cell(make_cell(tmp_path / "tolerant", tolerant))
    assert not any("validation clips undecodable" in w for w in result["warnings"])
