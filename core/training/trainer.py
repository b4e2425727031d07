"""The training loop of one cell: task segments, AdamW + schedule, clipping, AMP, checkpoints.

`train(cfg, segments, loop, state)` runs from `state.step` to the end of the last segment. What the
loop does besides optimising is reported to `TrainCallback`s (metrics to log, the end of every step,
the end of training), so the cell runner, progress displays and tests observe it without patching.
A checkpoint is written every `train.checkpoint_every` steps and once more at the end of training,
before evaluation, so an interrupted evaluation never redoes training steps.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from core.config.train import TrainConfig
from core.training.batches import to_device, train_loader
from core.training.checkpoint import capture_rng_state, save_checkpoint
from core.training.distributed import mean_over_ranks
from core.training.precision import autocast
from core.training.sharded_checkpoint import save_sharded_checkpoint


class NonFiniteLoss(RuntimeError):
    """The loss became NaN/inf; the cell stops and keeps its last good checkpoint."""

    def __init__(self, step: int, value: float) -> None:
        super().__init__(f"non-finite loss {value} at step {step}")
        self.step = step


@dataclass
class TaskSegment:
    """A contiguous range of global steps on one dataset (caption pre-training, then the task)."""

    task: str
    dataset: Any
    start: int
    stop: int


@dataclass
class TrainState:
    step: int = 0
    total_steps: int = 0
    skipped_batches: int = 0
    step_times: list[float] = field(default_factory=list)
    last_loss: float = float("nan")


class TrainCallback:
    """Hooks the loop calls; every method is optional (the base class does nothing)."""

    def on_train_begin(self, state: TrainState, model: nn.Module) -> None:
        """Before the first step of this run, with the model as it starts (initialised, or
        resumed: `state.step` > 0)."""

    def on_log(self, metrics: dict[str, Any], step: int) -> None:
        """Windowed training metrics every `train.log_every` steps and at each segment's end."""

    def on_step_end(self, state: TrainState) -> None:
        """After every step, skipped ones included, once its checkpoint (if due) is written."""

    def on_train_end(self, state: TrainState) -> None:
        """After the last step and the final checkpoint."""


@dataclass
class TrainLoop:
    """Everything the loop works on besides the config: model, optimisation, where and how."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    device: torch.device
    collate: Callable
    checkpoint_path: Path
    precision: str = "auto"
    num_workers: int = 0
    rank: int = 0
    world_size: int = 1
    extra_state: Callable[[], dict] | None = None
    callbacks: Sequence[TrainCallback] = ()
    sharded: bool = False  # FSDP: every rank writes its shard into checkpoint_path's directory

    def save_checkpoint(self, state: TrainState) -> None:
        if self.sharded:
            save_sharded_checkpoint(
                self.checkpoint_path.parent,
                self.model,
                self.optimizer,
                run_state(self.scheduler, state, self.extra_state),
            )
        elif self.rank == 0:
            save_checkpoint(
                self.checkpoint_path,
                checkpoint_state(
                    self.model, self.optimizer, self.scheduler, state, self.extra_state
                ),
            )


def train(
    cfg: TrainConfig, segments: Sequence[TaskSegment], loop: TrainLoop, state: TrainState
) -> TrainState:
    """Train from `state.step` to the end of the last segment. Raises NonFiniteLoss on NaN/inf."""
    total = segments[-1].stop if segments else 0
    state.total_steps = total
    params = [p for p in loop.model.parameters() if p.requires_grad]
    loop.model.train()
    for cb in loop.callbacks:
        cb.on_train_begin(state, loop.model)
    ran = False
    for segment in segments:
        if state.step >= segment.stop:
            continue
        ran = True
        loader = train_loader(
            segment.dataset,
            loop.collate,
            cfg.batch_size,
            cfg.seed + segment.start,
            state.step - segment.start,
            segment.stop - segment.start,
            loop.num_workers,
            loop.rank,
            loop.world_size,
        )
        window = _Window()
        for batch in loader:
            if _nothing_to_learn(batch, loop.world_size):
                # only undecodable clips: skip and count; the step, the schedule, the checkpoint
                # cadence and the callbacks still advance
                state.skipped_batches += 1
                state.step += 1
                loop.scheduler.step()
            else:
                tick = time.perf_counter()
                stats = _train_step(loop, batch, state.step, params, cfg.grad_clip)
                loop.scheduler.step()
                if loop.device.type == "cuda":
                    torch.cuda.synchronize(loop.device)
                state.step_times.append(time.perf_counter() - tick)
                state.step += 1
                state.last_loss = stats.pop("lm_loss")
                window.add(state.last_loss, stats.pop("aux_loss"), stats)
                if state.step % cfg.log_every == 0 or state.step == segment.stop:
                    metrics = window.flush(segment.task, loop.optimizer, state)
                    if loop.world_size > 1:  # the loss of the global batch, not of rank 0's part
                        state.last_loss, metrics["train/loss"], metrics["train/aux_loss"] = (
                            mean_over_ranks(
                                [state.last_loss, metrics["train/loss"], metrics["train/aux_loss"]]
                            )
                        )
                    for cb in loop.callbacks:
                        cb.on_log(metrics, state.step)
            if state.step % cfg.checkpoint_every == 0 and state.step < total:
                loop.save_checkpoint(state)
            for cb in loop.callbacks:
                cb.on_step_end(state)
    if ran:
        loop.save_checkpoint(state)
    for cb in loop.callbacks:
        cb.on_train_end(state)
    return state


class _Window:
    """Training metrics averaged over the steps since the last log line."""

    def __init__(self) -> None:
        self.loss, self.aux, self.n = 0.0, 0.0, 0
        self.stats: dict[str, float] = {}

    def add(self, loss: float, aux: float, stats: dict[str, float]) -> None:
        self.loss, self.aux, self.n = self.loss + loss, self.aux + aux, self.n + 1
        self.stats = stats

    def flush(self, task: str, optimizer: torch.optim.Optimizer, state: TrainState) -> dict:
        metrics = {
            "train/loss": self.loss / self.n,
            "train/aux_loss": self.aux / self.n,
            "train/lr": optimizer.param_groups[0]["lr"],
            "train/step_s": state.step_times[-1],
            "train/task": task,
            "train/skipped_batches": state.skipped_batches,
            **{f"train/{k}": v for k, v in self.stats.items()},
        }
        self.loss, self.aux, self.n = 0.0, 0.0, 0
        return metrics


def _nothing_to_learn(batch: dict, world_size: int) -> bool:
    """True when no clip of the global batch decoded (decided jointly, so DDP ranks agree)."""
    valid = batch.get("sample_valid")
    local = valid is not None and not bool(valid.any())
    if world_size > 1:
        return mean_over_ranks([float(local)])[0] == 1.0
    return local


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DDP (or similar) wrapper."""
    return getattr(model, "module", model)


def checkpoint_state(
    model, optimizer, scheduler, state: TrainState, extra_state: Callable[[], dict] | None = None
) -> dict:
    return {
        "model": unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict(),
        **run_state(scheduler, state, extra_state),
    }


def run_state(scheduler, state: TrainState, extra_state: Callable[[], dict] | None = None) -> dict:
    """Everything a checkpoint holds besides the model and optimizer state."""
    return {
        "scheduler": scheduler.state_dict(),
        "rng": capture_rng_state(),
        "step": state.step,
        "skipped_batches": state.skipped_batches,
        "step_times": list(state.step_times[-200:]),
        "last_loss": state.last_loss,
        **(extra_state() if extra_state else {}),
    }


def _train_step(
    loop: TrainLoop, batch: dict, step: int, params: list[nn.Parameter], grad_clip: float
) -> dict[str, float]:
    """One optimiser step on one batch; returns lm_loss, aux_loss and the model's scalar stats."""
    batch = to_device(batch, loop.device)
    with autocast(loop.device, loop.precision):
        out = loop.model(batch, step=step)
    value = float(out.loss.detach())
    if not math.isfinite(value):
        raise NonFiniteLoss(step, value)
    loop.optimizer.zero_grad(set_to_none=True)
    out.loss.backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    loop.optimizer.step()
    stats = {k: v for k, v in out.stats.items() if isinstance(v, int | float)}
    return {
        **stats,
        "lm_loss": float(out.lm_loss.detach()),
        "aux_loss": float(out.aux_loss.detach()),
    }
