"""Training progress of a cell on screen: step of total, loss, steps/s and ETA.

On a terminal it is a tqdm bar redrawn in place; when output is not a terminal (CI, SLURM logs,
a pipe) it is one plain line per logged step, so logs stay readable and grep-able. Mode `off`
prints nothing. The numbers come from the training loop's callbacks (`TrainCallback`).
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any

from torch import nn

from core.config.train import PROGRESS_MODES as MODES
from core.training.trainer import TrainCallback, TrainState


def resolve_mode(mode: str, stream: IO[str]) -> str:
    """`auto` → `bar` on a terminal, `lines` otherwise."""
    if mode not in MODES:
        raise ValueError(f"logging.progress={mode!r}: unknown mode. Fix: use one of {MODES}.")
    if mode != "auto":
        return mode
    return "bar" if getattr(stream, "isatty", lambda: False)() else "lines"


def format_eta(seconds: float) -> str:
    """`m:ss` or `h:mm:ss`; `?` when unknown."""
    if not 0 <= seconds < float("inf"):
        return "?"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class TrainProgress(TrainCallback):
    """Progress of one cell's training; give it to rank 0 only."""

    def __init__(self, name: str, mode: str = "auto", stream: IO[str] | None = None) -> None:
        self.name = name
        self.stream = stream or sys.stderr
        self.mode = resolve_mode(mode, self.stream)
        self.bar: Any = None
        self.started = 0.0
        self.first_step = 0
        self.total = 0

    def rate(self, step: int) -> float:
        """Steps per second of this run so far."""
        elapsed = time.perf_counter() - self.started
        return (step - self.first_step) / elapsed if step > self.first_step and elapsed > 0 else 0.0

    def on_train_begin(self, state: TrainState, model: nn.Module) -> None:
        self.started, self.first_step, self.total = (
            time.perf_counter(),
            state.step,
            state.total_steps,
        )
        if self.mode == "bar":
            from tqdm import tqdm

            self.bar = tqdm(
                total=self.total,
                initial=state.step,
                desc=self.name,
                unit="step",
                file=self.stream,
                dynamic_ncols=True,
                leave=False,
            )

    def on_step_end(self, state: TrainState) -> None:
        if self.bar is not None:
            self.bar.update(state.step - self.bar.n)

    def on_log(self, metrics: dict[str, Any], step: int) -> None:
        loss, task = metrics.get("train/loss", float("nan")), metrics.get("train/task", "")
        if self.bar is not None:
            self.bar.set_postfix_str(f"{task} loss {loss:.3f}", refresh=False)
        elif self.mode == "lines":
            rate = self.rate(step)
            eta = (self.total - step) / rate if rate > 0 else float("inf")
            print(
                f"[{self.name}] step {step}/{self.total} {task} loss {loss:.4f} "
                f"{rate:.2f} step/s ETA {format_eta(eta)}",
                file=self.stream,
                flush=True,
            )

    def on_train_end(self, state: TrainState) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.mode != "off" and state.step > self.first_step:
            took = time.perf_counter() - self.started
            print(
                f"[{self.name}] trained steps {self.first_step + 1}-{state.step} in {took:.0f}s",
                file=self.stream,
                flush=True,
            )
