"""End-to-end tests of the experiment cell runner (`core.cell.run_cell`) on a tiny QA dataset.

Every cell trains a 2-block ViT (32×32 frames, patch 8, STTS scorer pruning a quarter of the
tokens) and a 2-layer 32-dim decoder for a few steps on CPU, so each run takes a second or two.
Interruptions are injected through the trainer's `on_step` hook; final weights are captured at
the start of evaluation, since the last step is never checkpointed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import core.cell
from core.cell import run_cell
from core.config import ExperimentConfig
from core.io import read_json, read_jsonl, read_yaml, write_yaml_atomic
from core.models.vlm import VideoVLM
from core.training.batches import ResumableBatchSampler
from core.training.checkpoint import load_checkpoint
from core.training.status import git_commit, read_status
from core.training.trainer import NonFiniteLoss
from core.training.trainer import train as real_train
from tests.video_fixtures import coded_frames, write_mp4, write_random_bytes

N_TRAIN, N_VAL, BATCH = 8, 4, 4
COLOURS = ("red", "blue")
COUNTS = ("one", "two", "three")


class Preempted(Exception):
    """Stands in for a job killed mid-run (SIGTERM/time limit) after some step."""


# ---- data -------------------------------------------------------------------------------------
def _row(split: str, i: int, video: Path) -> dict[str, Any]:
    """Even rows ask a colour (2 options), odd rows a count (3 options)."""
    if i % 2 == 0:
        answer, options, qtype = COLOURS[(i // 2) % 2], list(COLOURS), "colour"
        question = "what colour is the square?"
    else:
        answer, options, qtype = COUNTS[(i // 2) % 3], list(COUNTS), "count"
        question = "how many squares are there?"
    return {
        "clip_id": f"{split}{i}",
        "video": str(video),
        "question": question,
        "answer": answer,
        "options": options,
        "question_type": qtype,
        "caption": f"the {COLOURS[i % 2]} square moves {('left', 'right')[(i // 2) % 2]}.",
    }


def write_dataset(
    root: Path, name: str, bad_train: Collection[int] = (), bad_val: Collection[int] = ()
) -> Path:
    """`root/raw/<name>/qa/{train,validation}.jsonl` over 4-frame 32×32 MP4s; the clips whose
    index is in `bad_*` are 2 KB of random bytes with a .mp4 name."""
    for split, n, bad in (("train", N_TRAIN, bad_train), ("validation", N_VAL, bad_val)):
        rows = []
        for i in range(n):
            video = root / "videos" / name / split / f"{split}{i}.mp4"
            if i in bad:
                write_random_bytes(video, size=2048, seed=i)
            else:
                write_mp4(video, np.roll(coded_frames(4, 32, 32), 3 * i, axis=2), fps=4)
            rows.append(_row(split, i, video))
        manifest = root / "raw" / name / "qa" / f"{split}.jsonl"
        manifest.parent.mkdir(parents=True, exist_ok=True)
        manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def cell_config(data_root: Path, name: str, **sections: dict[str, Any]) -> dict[str, Any]:
    """The tiny experiment as config.yaml sections; `sections` update them per test."""
    base: dict[str, dict[str, Any]] = {
        "data": {
            "data_root": str(data_root),
            "dataset_type": "qa_jsonl",
            "dataset_name": name,
            "generate_synthetic": False,
            "fps": 2.0,
            "max_frames": 2,
            "min_frames": 1,
            "frame_size": 32,
            "max_text_len": 16,
        },
        "vision": {"patch_size": 8, "dim": 32, "depth": 2, "heads": 2},
        "connector": {"window": 2},
        "lm": {"dim": 32, "n_layers": 2, "n_heads": 2, "n_kv_heads": 1, "max_seq_len": 64},
        "pruning": {"method": "scorer", "ratio": 0.25, "prune_at": 0},
        "train": {
            "steps": 6,
            "caption_steps": 0,
            "batch_size": BATCH,
            "lr": 3e-3,
            "warmup_steps": 2,
            "checkpoint_every": 2,
            "log_every": 1,
            "device": "cpu",
            "num_threads": 1,
            "seed": 0,
        },
        "eval": {"batch_size": 4, "measure_efficiency": False},
        "logging": {"wandb": "disabled"},
    }
    for section, values in sections.items():
        base[section].update(values)
    return base


def make_cell(
    cell_dir: Path, sections: dict[str, Any], grid: str = "tinygrid", name: str = "tiny"
) -> Path:
    """Write config.yaml as the launcher does: resolved sections plus the `cell` block."""
    cfg = ExperimentConfig.from_dict(sections)
    frozen = cfg.to_dict()
    frozen["cell"] = {
        "cell_id": cfg.identity_hash(),
        "grid": grid,
        "name": name,
        "axes": {"seed": cfg.train.seed},
        "overrides": {},
    }
    write_yaml_atomic(cell_dir / "config.yaml", frozen)
    return cell_dir


def edit_config(cell_dir: Path, section: str, **values: Any) -> None:
    raw = read_yaml(cell_dir / "config.yaml")
    raw[section].update(values)
    write_yaml_atomic(cell_dir / "config.yaml", raw)


# ---- run helpers ------------------------------------------------------------------------------
def interrupt_after(mp: pytest.MonkeyPatch, step: int) -> None:
    """Make the next cell raise `Preempted` right after global step `step` (after its checkpoint)."""

    def on_step(s: int) -> None:
        if s == step:
            raise Preempted(f"preempted after step {s}")

    def train(*args: Any, **kwargs: Any) -> Any:
        return real_train(*args, on_step=on_step, **kwargs)

    mp.setattr(core.cell, "train", train)


def capture_final_weights(mp: pytest.MonkeyPatch) -> list[dict[str, torch.Tensor]]:
    """Record the model's parameters each time the cell starts its evaluation."""
    seen: list[dict[str, torch.Tensor]] = []
    real_evaluate = core.cell.evaluate

    def evaluate(model: torch.nn.Module, *args: Any, **kwargs: Any) -> dict:
        seen.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        return real_evaluate(model, *args, **kwargs)

    mp.setattr(core.cell, "evaluate", evaluate)
    return seen


def train_rows(cell_dir: Path) -> list[dict[str, Any]]:
    return [r for r in read_jsonl(cell_dir / "metrics.jsonl") if r["phase"] == "train"]


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(
        torch.allclose(a[k].float(), b[k].float(), rtol=1e-6, atol=1e-7) for k in a
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
        weights = capture_final_weights(mp)
        result = run_cell(cell_dir)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic)
    assert len(weights) == 1
    return cell_dir, result, weights[0]


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

    with monkeypatch.context() as mp:
        interrupt_after(mp, 5)
        with pytest.raises(Preempted):
            run_cell(cell_dir)
    assert not (cell_dir / "result.json").exists()
    status = read_status(cell_dir)
    assert status["state"] == "failed" and status["attempts"] == 1
    assert "Preempted" in status["error"] and status["failed_step"] == 5
    assert load_checkpoint(cell_dir / "checkpoints" / "last.pt")["step"] == 4

    weights = capture_final_weights(monkeypatch)
    result = run_cell(cell_dir)
    status = read_status(cell_dir)
    assert status["state"] == "done" and status["attempts"] == 2
    # Attempt 1 logged steps 1-5; attempt 2 restarted from the step-4 checkpoint, not from 0.
    rows = train_rows(cell_dir)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 5, 6]
    ref_rows = {r["step"]: r for r in train_rows(ref_dir)}
    for r in rows:
        assert r["train/loss"] == pytest.approx(ref_rows[r["step"]]["train/loss"], rel=1e-6)

    for key in ("train_loss", "val_loss", "accuracy"):
        assert result["metrics"][key] == pytest.approx(ref_result["metrics"][key], rel=1e-6), key
    assert result["metrics"]["accuracy_by_type"] == ref_result["metrics"]["accuracy_by_type"]
    assert len(weights) == 1 and same_weights(weights[0], ref_weights)

    # Negative control: another seed (other init and batch order) ends elsewhere.
    other = make_cell(tmp_path / "seed1", {**sections, "train": {**sections["train"], "seed": 1}})
    run_cell(other)
    assert len(weights) == 2 and not same_weights(weights[1], ref_weights)
    other_loss = read_json(other / "result.json")["metrics"]["val_loss"]
    assert other_loss != pytest.approx(ref_result["metrics"]["val_loss"], rel=1e-4)


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
    for key in ("vit_gflops", "scorer_gflops", "llm_gflops", "total_gflops"):
        assert e[key] > 0, key
    assert e["total_gflops"] >= e["vit_gflops"] + e["llm_gflops"]
    for key in ("train_step_s", "prefill_latency_s", "forward_backward_s", "peak_memory_mb"):
        assert e[key] > 0, key
    assert e["memory_method"] in ("vmhwm", "rss_sampling")
    assert result["hardware"]["device"] == "cpu" and result["hardware"]["threads"] == 1
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
    assert [r["step"] for r in train_rows(cell_dir)] == [1, 2, 3, 3, 4, 5, 6]
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
    with monkeypatch.context() as mp:
        interrupt_after(mp, 5)
        with pytest.raises(Preempted):
            run_cell(cell_dir)

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
    assert [r["step"] for r in train_rows(cell_dir)] == [1, 2, 3, 4, 5, 6]
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
    assert read_status(cell_dir)["state"] == "done"


# ---- 7. caption pre-training ------------------------------------------------------------------
def test_caption_phase_runs_before_the_task(data_root: Path, tmp_path: Path) -> None:
    sections = cell_config(data_root, "tinyqa", train={"steps": 2, "caption_steps": 2})
    cell_dir = make_cell(tmp_path / "cell", sections)
    result = run_cell(cell_dir)
    rows = train_rows(cell_dir)
    assert [(r["step"], r["train/phase"]) for r in rows] == [
        (1, "caption"),
        (2, "caption"),
        (3, "qa"),
        (4, "qa"),
    ]
    assert 0.0 <= result["metrics"]["accuracy"] <= 1.0
