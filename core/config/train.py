"""Train, eval and logging sections."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from core.config._build import fail

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16")
PARALLEL = ("ddp", "fsdp")
WANDB_MODES = ("auto", "online", "offline", "disabled")
PROGRESS_MODES = ("auto", "bar", "lines", "off")


@dataclass
class TrainConfig:
    """AdamW with warm-up and cosine decay. `caption_steps` > 0 adds a caption pre-training phase
    before the `steps` of the task in `data.task`."""

    # Defaults: the tiny CPU preset (about 0.25 s per step on 2 cores): 400 caption pre-training
    # steps, then 200 QA steps (benchmarks/results/learnability.md).
    steps: int = 200
    caption_steps: int = 400
    batch_size: int = 32
    lr: float = 3e-3
    reducer_lr: float = 1e-3  # the token reducer's own parameters (STTS scorer)
    weight_decay: float = 0.05
    warmup_steps: int = 20
    reducer_warmup_steps: int | None = None  # None → warmup_steps
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    seed: int = 0
    checkpoint_every: int = 100
    log_every: int = 10
    device: str = "auto"
    precision: str = "auto"
    num_threads: int = 0  # 0 → torch default
    init_from: str = ""  # optional checkpoint to start from (weights only)
    # A cell of the same grid (its id) whose final weights this cell starts from: the base of a
    # fine-tune or zero-shot cell. Part of the cell's identity, so a changed base re-runs exactly
    # its dependents. The launcher sets it from the grid's protocol.
    init_cell: str = ""
    # Under torchrun: ddp replicates the model on every rank; fsdp shards parameters, gradients
    # and optimizer state per block (FSDP2) and checkpoints shards (checkpoints/last/). A single
    # process ignores it.
    parallel: str = "ddp"
    fsdp_cpu_offload: bool = False  # fsdp only: sharded parameters and optimizer state on the CPU
    activation_checkpointing: bool = False  # recompute each block's activations in backward

    def __post_init__(self) -> None:
        if self.steps < 0 or self.caption_steps < 0:
            fail("train.steps", self.steps, "steps must be ≥ 0", "use a positive step count")
        if self.batch_size < 1:
            fail("train.batch_size", self.batch_size, "must be ≥ 1", "use e.g. 32")
        for name in ("lr", "reducer_lr"):
            if getattr(self, name) <= 0:
                fail(f"train.{name}", getattr(self, name), "must be positive", "use e.g. 1e-3")
        if self.warmup_steps < 0:
            fail("train.warmup_steps", self.warmup_steps, "must be ≥ 0", "use e.g. 30")
        if self.reducer_warmup_steps is not None and self.reducer_warmup_steps < 0:
            fail(
                "train.reducer_warmup_steps",
                self.reducer_warmup_steps,
                "must be ≥ 0",
                "use e.g. 20, or null to follow train.warmup_steps",
            )
        if not 0 <= self.min_lr_ratio <= 1:
            fail("train.min_lr_ratio", self.min_lr_ratio, "must lie in [0, 1]", "use 0.1")
        if self.grad_clip < 0:
            fail("train.grad_clip", self.grad_clip, "must be ≥ 0", "use 1.0 (0 disables)")
        if self.checkpoint_every < 1:
            fail("train.checkpoint_every", self.checkpoint_every, "must be ≥ 1", "use e.g. 100")
        if self.device not in DEVICES:
            fail("train.device", self.device, "unknown device", f"use one of {DEVICES}")
        if self.init_cell and self.init_from:
            fail(
                "train.init_cell",
                self.init_cell,
                f"conflicts with train.init_from={self.init_from!r}: a cell starts from one source",
                "set only one of them",
            )
        if self.init_cell and not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", self.init_cell):
            fail(
                "train.init_cell",
                self.init_cell,
                "is not a cell id (letters, digits, - and _ only)",
                "give the id of a cell folder of the same grid",
            )
        if self.precision not in PRECISIONS:
            fail("train.precision", self.precision, "unknown precision", f"use one of {PRECISIONS}")
        if self.parallel not in PARALLEL:
            fail("train.parallel", self.parallel, "unknown parallelism", f"use one of {PARALLEL}")
        if self.fsdp_cpu_offload and self.parallel != "fsdp":
            fail(
                "train.fsdp_cpu_offload",
                True,
                f"CPU offload is part of FSDP, but train.parallel={self.parallel!r}",
                "set train.parallel=fsdp, or train.fsdp_cpu_offload=false",
            )
        if self.fsdp_cpu_offload and self.device == "cpu":
            fail(
                "train.fsdp_cpu_offload",
                True,
                "offloading to the CPU needs training on CUDA, but train.device='cpu'",
                "set train.fsdp_cpu_offload=false, or train.device=cuda",
            )


@dataclass
class EvalConfig:
    batch_size: int = 64
    max_samples: int = 0
    measure_efficiency: bool = True
    efficiency_batch_size: int = 8
    efficiency_warmup: int = 1
    efficiency_iters: int = 5  # interleaved pairs (cell model, unpruned model) after the warm-up
    # a result with a larger share of undecodable clips is flagged in result.json's warnings
    max_bad_fraction: float = 0.05

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            fail("eval.batch_size", self.batch_size, "must be ≥ 1", "use e.g. 64")
        if self.efficiency_iters < 1:
            fail("eval.efficiency_iters", self.efficiency_iters, "must be ≥ 1", "use e.g. 3")
        if not 0.0 <= self.max_bad_fraction <= 1.0:
            fail("eval.max_bad_fraction", self.max_bad_fraction, "must be in [0, 1]", "e.g. 0.05")


@dataclass
class LoggingConfig:
    """W&B mode `auto`: online when WANDB_API_KEY is set, offline otherwise."""

    wandb: str = "auto"
    project: str = "vidprune"
    entity: str = ""
    group: str = ""
    job_type: str = "train"
    tags: list[str] = field(default_factory=list)
    # training progress on screen: auto = a bar on a terminal, one line per log step otherwise
    progress: str = "auto"

    def __post_init__(self) -> None:
        if self.wandb not in WANDB_MODES:
            fail("logging.wandb", self.wandb, "unknown W&B mode", f"use one of {WANDB_MODES}")
        if self.progress not in PROGRESS_MODES:
            fail(
                "logging.progress",
                self.progress,
                "unknown progress mode",
                f"use one of {PROGRESS_MODES}",
            )
