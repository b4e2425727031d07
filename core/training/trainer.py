"""The training loop of one cell: phases, AdamW + schedule, clipping, AMP, checkpoints, NaN guard."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from core.config import ExperimentConfig
from core.training.batches import train_loader
from core.training.checkpoint import capture_rng_state, save_checkpoint
from core.training.evaluate import to_device


class NonFiniteLoss(RuntimeError):
    """The loss became NaN/inf; the cell stops and keeps its last good checkpoint."""

    def __init__(self, step: int, value: float) -> None:
        super().__init__(f"non-finite loss {value} at step {step}")
        self.step = step


@dataclass
class Phase:
    """A contiguous range of global steps on one dataset (caption pre-training, then the task)."""

    name: str
    dataset: object
    start: int
    stop: int


@dataclass
class TrainState:
    step: int = 0
    skipped_batches: int = 0
    step_times: list[float] = field(default_factory=list)
    last_loss: float = float("nan")


def train(
    model: nn.Module,
    cfg: ExperimentConfig,
    phases: list[Phase],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    state: TrainState,
    device: torch.device,
    collate: Callable,
    checkpoint_path,
    log: Callable[[dict, int], None],
    on_step: Callable[[int], None] | None = None,
    rank: int = 0,
    world_size: int = 1,
    extra_state: Callable[[], dict] | None = None,
) -> TrainState:
    """Train from `state.step` to the end of the last phase, checkpointing every
    `train.checkpoint_every` steps (rank 0 writes). Raises NonFiniteLoss on NaN/inf."""
    tc = cfg.train
    use_amp = device.type == "cuda" and tc.precision in ("auto", "bf16")
    params = [p for p in model.parameters() if p.requires_grad]
    model.train()
    for phase in phases:
        if state.step >= phase.stop:
            continue
        loader = train_loader(
            phase.dataset,
            collate,
            tc.batch_size,
            tc.seed + phase.start,
            state.step - phase.start,
            phase.stop - phase.start,
            cfg.data.num_workers,
            rank,
            world_size,
        )
        window_loss, window_aux, window_n = 0.0, 0.0, 0
        for batch in loader:
            step = state.step
            tick = time.perf_counter()
            valid = batch.get("sample_valid")
            if valid is not None and not bool(valid.any()):
                # only undecodable clips: skip and count; the step still advances, and
                # checkpointing and on_step below still run so their cadence is kept
                state.skipped_batches += 1
                state.step += 1
                scheduler.step()
            else:
                stats = _train_step(model, batch, step, device, use_amp, optimizer, params, tc)
                scheduler.step()
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                state.step_times.append(time.perf_counter() - tick)
                state.step += 1
                state.last_loss = stats.pop("lm_loss")
                window_loss += state.last_loss
                window_aux += stats.pop("aux_loss")
                window_n += 1
                if state.step % tc.log_every == 0 or state.step == phase.stop:
                    log(
                        {
                            "train/loss": window_loss / window_n,
                            "train/aux_loss": window_aux / window_n,
                            "train/lr": optimizer.param_groups[0]["lr"],
                            "train/step_s": state.step_times[-1],
                            "train/phase": phase.name,
                            "train/skipped_batches": state.skipped_batches,
                            **{f"train/{k}": v for k, v in stats.items()},
                        },
                        state.step,
                    )
                    window_loss, window_aux, window_n = 0.0, 0.0, 0
            due = state.step % tc.checkpoint_every == 0 and state.step < phases[-1].stop
            if due and rank == 0:
                save_checkpoint(
                    checkpoint_path,
                    checkpoint_state(model, optimizer, scheduler, state, extra_state),
                )
            if on_step is not None:
                on_step(state.step)
    return state


def unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)


def checkpoint_state(
    model, optimizer, scheduler, state: TrainState, extra_state: Callable[[], dict] | None = None
) -> dict:
    return {
        "model": unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": capture_rng_state(),
        "step": state.step,
        "skipped_batches": state.skipped_batches,
        "step_times": list(state.step_times[-200:]),
        **(extra_state() if extra_state else {}),
    }


def _train_step(model, batch, step, device, use_amp, optimizer, params, tc) -> dict[str, float]:
    """One optimiser step on one batch; returns lm_loss, aux_loss and the model's scalar stats."""
    batch = to_device(batch, device)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
        out = model(batch, step=step)
    value = float(out.loss.detach())
    if not math.isfinite(value):
        raise NonFiniteLoss(step, value)
    optimizer.zero_grad(set_to_none=True)
    out.loss.backward()
    if tc.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(params, tc.grad_clip)
    optimizer.step()
    stats = {k: v for k, v in out.stats.items() if isinstance(v, int | float)}
    return {
        **stats,
        "lm_loss": float(out.lm_loss.detach()),
        "aux_loss": float(out.aux_loss.detach()),
    }
