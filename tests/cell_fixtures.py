"""A tiny QA dataset and cell folders written as the launcher writes them, for cell-level tests.

Every cell trains a 3-block ViT (32×32 frames, patch 8, STTS scorer pruning a quarter of the
tokens) and a 2-layer 32-dim decoder for a few steps on CPU, so each run takes a second or two.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.config import ExperimentConfig
from core.io import read_jsonl, read_yaml, write_yaml_atomic
from core.results import cell_block, write_config
from core.training.checkpoint import load_checkpoint
from core.training.trainer import TrainCallback, TrainState
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
        "vision": {"patch_size": 8, "dim": 32, "depth": 3, "heads": 2},
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
    cell_dir: Path,
    sections: dict[str, Any],
    grid: str = "tinygrid",
    name: str = "tiny",
    axes: dict[str, Any] | None = None,
) -> Path:
    """Write config.yaml with the launcher's own writer: resolved sections plus the `cell` block
    (`axes` defaults to the seed only; pass the full axes for cells that analysis groups)."""
    cfg = ExperimentConfig.from_dict(sections)
    axes = {"seed": cfg.train.seed} if axes is None else axes
    block = cell_block(cfg.identity_hash(), grid, name, axes, {})
    write_config(cell_dir, {**cfg.to_dict(), "cell": block})
    return cell_dir


def edit_config(cell_dir: Path, section: str, **values: Any) -> None:
    raw = read_yaml(cell_dir / "config.yaml")
    raw[section].update(values)
    write_yaml_atomic(cell_dir / "config.yaml", raw)


# ---- run helpers ------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def join_as_rank(rank: int, world: int, port: int) -> None:
    """Export what torchrun would for `rank` of `world` on this host (and keep W&B off)."""
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        WANDB_MODE="disabled",
    )
    torch.set_num_threads(1)


class InterruptAfter(TrainCallback):
    """Raise `Preempted` right after global step `step` (after its checkpoint, if one is due)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, state: TrainState) -> None:
        if state.step == self.step:
            raise Preempted(f"preempted after step {state.step}")


class InterruptAfterTraining(TrainCallback):
    """Raise `Preempted` once training has ended (as if killed during evaluation)."""

    def on_train_end(self, state: TrainState) -> None:
        raise Preempted(f"preempted after training, at step {state.step}")


def final_weights(cell_dir: Path) -> dict[str, torch.Tensor]:
    """The weights evaluation ran on: the checkpoint written at the end of training."""
    return load_checkpoint(cell_dir / "checkpoints" / "last.pt")["model"]


def train_rows(cell_dir: Path) -> list[dict[str, Any]]:
    return [r for r in read_jsonl(cell_dir / "metrics.jsonl") if r["phase"] == "train"]


def same_weights(
    a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], rtol: float = 1e-6, atol: float = 1e-7
) -> bool:
    return a.keys() == b.keys() and all(
        torch.allclose(a[k].float(), b[k].float(), rtol=rtol, atol=atol) for k in a
    )
