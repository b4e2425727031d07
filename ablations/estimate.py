"""Wall-time estimate of a plan from training steps timed on this machine.

Each distinct model (the config minus seed, schedule and logging) is built once with random weights
and timed for a few forward+backward+optimizer steps on a random batch of the cell's shapes; a
cell's estimate is its training steps, its evaluation forwards and its side-by-side efficiency
measurement (cell model and unpruned model) at those times. Data generation, decoding and start-up
are not included: the estimate is the compute a cell cannot avoid (the default sweep's record in
benchmarks/results/sweep.md compares it with the measured wall time).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch

from core.config import ExperimentConfig
from core.training.schedule import build_optimizer

SHAPE_SECTIONS = ("data", "vision", "connector", "lm", "fusion", "pruning")
# keys that do not change a step's cost
IGNORED = {
    "seed",
    "data_root",
    "dataset_name",
    "split",
    "eval_split",
    "synthetic_seed",
    "ground_truth",
}
FALLBACK_VOCAB = 512  # the tiny tokenizer's order of magnitude when lm.vocab_size is not fixed


@dataclass(frozen=True)
class StepTimes:
    train_s: float  # one optimizer step at train.batch_size
    forward_s: float  # one no-grad forward at train.batch_size


def model_key(cfg: ExperimentConfig) -> str:
    """What determines a step's cost: the shape sections without seeds and paths."""
    flat = {k: v for k, v in cfg.flat().items() if k.split(".")[0] in SHAPE_SECTIONS}
    flat = {k: v for k, v in flat.items() if k.rsplit(".", 1)[-1] not in IGNORED}
    flat["train.batch_size"] = cfg.train.batch_size
    blob = json.dumps(flat, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def random_batch(cfg: ExperimentConfig, vocab: int, batch: int) -> dict[str, torch.Tensor]:
    d = cfg.data
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(4, vocab, (batch, d.max_text_len), generator=gen)
    labels = torch.full_like(ids, -100)
    labels[:, -4:] = ids[:, -4:]
    out = {
        "pixel_values": torch.randn(
            batch, d.max_frames, 3, d.frame_size, d.frame_size, generator=gen
        ),
        "frame_mask": torch.ones(batch, d.max_frames, dtype=torch.bool),
        "input_ids": ids,
        "labels": labels,
        "text_mask": torch.ones_like(ids, dtype=torch.bool),
    }
    if d.ground_truth:  # the oracle's object masks, pixel resolution
        shape = (batch, d.max_frames, d.frame_size, d.frame_size)
        out["object_mask"] = torch.rand(shape, generator=gen) < 0.1
    return out


def time_steps(cfg: ExperimentConfig, iters: int = 2) -> StepTimes:
    """Median time of `iters` training steps and forwards (after one warm-up) of a fresh model."""
    from core.models.vlm import VideoVLM

    torch.manual_seed(0)
    vocab = cfg.lm.vocab_size or FALLBACK_VOCAB
    model = VideoVLM(cfg, vocab)
    optimizer = build_optimizer(model, cfg.train)
    batch = random_batch(cfg, vocab, cfg.train.batch_size)

    def train() -> None:
        optimizer.zero_grad(set_to_none=True)
        model(batch, step=cfg.train.steps).loss.backward()
        optimizer.step()

    def forward() -> None:
        with torch.no_grad():
            model(batch, step=cfg.train.steps)

    return StepTimes(_median_time(train, iters), _median_time(forward, iters))


def _median_time(fn: Callable[[], Any], iters: int) -> float:
    fn()
    times = []
    for _ in range(iters):
        tick = time.perf_counter()
        fn()
        times.append(time.perf_counter() - tick)
    return sorted(times)[len(times) // 2]


def eval_clips(cfg: ExperimentConfig) -> int:
    d = cfg.data
    n = d.synthetic_val if d.dataset_name == "synthetic" else 0
    if d.max_eval_samples:
        n = min(n, d.max_eval_samples) if n else d.max_eval_samples
    return n


def cell_seconds(cfg: ExperimentConfig, steps: int, times: StepTimes, unpruned: StepTimes) -> float:
    """Training, evaluation and the side-by-side measurement of one cell at the timed steps."""
    seconds = steps * times.train_s
    seconds += eval_clips(cfg) / cfg.train.batch_size * times.forward_s
    if cfg.eval.measure_efficiency:
        scale = cfg.eval.efficiency_batch_size / cfg.train.batch_size
        rounds = cfg.eval.efficiency_warmup + cfg.eval.efficiency_iters
        pair = (times.train_s + unpruned.train_s + times.forward_s + unpruned.forward_s) * scale
        seconds += rounds * pair
    return seconds


def estimate_wall_time(
    cells: Iterable[Any], timer: Callable[[ExperimentConfig], StepTimes] = time_steps
) -> dict[str, Any]:
    """{seconds, models_timed, timing_s}: the plan's compute at step times measured here; `cells`
    are CellSpecs (`.config`, `.steps`)."""
    from core.cell import unpruned_config

    tick = time.perf_counter()
    cache: dict[str, StepTimes] = {}

    def timed(cfg: ExperimentConfig) -> StepTimes:
        key = model_key(cfg)
        if key not in cache:
            cache[key] = timer(cfg)
        return cache[key]

    seconds = 0.0
    for cell in cells:
        cfg = cell.config
        seconds += cell_seconds(cfg, cell.steps, timed(cfg), timed(unpruned_config(cfg)))
    return {
        "seconds": seconds,
        "models_timed": len(cache),
        "timing_s": time.perf_counter() - tick,
        "load_per_core": os.getloadavg()[0] / (os.cpu_count() or 1),
        "threads": torch.get_num_threads(),
    }


def describe(estimate: dict[str, Any]) -> str:
    """The dry run's line: the estimate and what it rests on (a busy machine inflates it)."""
    busy = estimate["load_per_core"]
    note = f"; the machine is busy (load {busy:.1f} per core)" if busy > 1.2 else ""
    return (
        f"estimated compute: {format_duration(estimate['seconds'])} (steps of "
        f"{estimate['models_timed']} distinct models timed here on {estimate['threads']} "
        f"thread(s) in {estimate['timing_s']:.0f} s; data generation and decoding not included"
        f"{note})"
    )


def format_duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
