"""One experiment cell, top to bottom: data → model → optimisation → parallel wrap → train →
evaluate → measure → result.json.

`run_cell(cell_dir)` is what every launcher backend calls. It reads `cell_dir/config.yaml` (the
resolved config plus a `cell` block), resumes from its newest checkpoint when there is one
(`checkpoints/last.pt`, or `checkpoints/last/` for FSDP; refusing a changed config), and writes
`status.json`, `metrics.jsonl`, `diagnostics/` and finally `result.json` atomically: its presence
means the cell is done, so finished results are never redone or lost. Under torchrun every rank
trains (DDP, or FSDP with `train.parallel=fsdp`); only rank 0 evaluates and writes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from core.config import ExperimentConfig
from core.data import build_dataset, build_tokenizer, collate, prepare_data
from core.data.datasets import SYNTHETIC, dataset_class
from core.diagnostics import keep_map_image, save_keep_example
from core.efficiency import analytic_flops, hardware_info, peak_memory_info
from core.efficiency.side_by_side import compare_interleaved
from core.extensions import display_metadata, reference_method
from core.io import read_yaml
from core.models.vlm import VideoVLM
from core.registry import REDUCERS
from core.results import (
    CHECKPOINT_DIR,
    CONFIG_FILE,
    DIAGNOSTICS_DIR,
    METRICS_FILE,
    RUNTIME_KEYS,
    CellStatus,
    read_result,
    write_result,
)
from core.training.batches import eval_loader, to_device
from core.training.checkpoint import (
    LAST,
    load_model_weights,
    remove_temp_files,
    restore_rng_state,
    resume_points,
)
from core.training.distributed import DistInfo, init_distributed, leave_process_group
from core.training.evaluate import chance_level, evaluate
from core.training.fsdp import (
    apply_activation_checkpointing,
    full_model_state,
    remove_activation_checkpointing,
    shard_model,
)
from core.training.logger import RunLogger, drop_train_rows_after, make_logger
from core.training.progress import TrainProgress
from core.training.schedule import build_optimizer, build_scheduler, is_reducer_parameter
from core.training.seeding import seed_everything
from core.training.sharded_checkpoint import LAST as SHARDED_LAST
from core.training.sharded_checkpoint import load_full_checkpoint, load_sharded_checkpoint
from core.training.trainer import (
    NonFiniteLoss,
    TaskSegment,
    TrainCallback,
    TrainLoop,
    TrainState,
    train,
)

CHECKPOINT = f"{CHECKPOINT_DIR}/last.pt"
FINAL = (LAST, SHARDED_LAST)  # names of a cell's newest checkpoint: file, or sharded directory


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "train.device=cuda but no CUDA device is visible. Fix: use train.device=cpu"
        )
    return torch.device(name)


def load_cell_config(cell_dir: Path) -> tuple[ExperimentConfig, dict[str, Any]]:
    path = cell_dir / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no frozen cell config. Fix: launch the cell through "
            "ablations/launch.py, which writes it."
        )
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping of config sections")
    meta = raw.pop("cell", None) or {}
    return ExperimentConfig.from_dict(raw), meta


def load_all_but_reducer(model: nn.Module, weights: dict[str, torch.Tensor], source: Path) -> None:
    """Load `weights` into every parameter and buffer of `model` except the token reducer's;
    anything else missing or unexpected means the checkpoint is of another model."""
    missing, unexpected = model.load_state_dict(weights, strict=False)
    missing = [k for k in missing if not is_reducer_parameter(k)]
    if missing or unexpected:
        raise ValueError(
            f"{source}: its weights do not fit this cell's model (missing {missing[:4]}, "
            f"unexpected {unexpected[:4]}). Fix: start from a checkpoint of the same vision, "
            "connector, lm and fusion settings."
        )


def software_versions() -> dict[str, str]:
    """The versions that determine a result besides the code: torch, numpy, and PyAV with the
    FFmpeg/x264 builds that decode (and, for the synthetic benchmark, encoded) the clips."""
    from core.data.synthetic.checksum import environment_versions

    return {"torch": torch.__version__, **environment_versions()}


def data_identity(cfg: Any) -> dict[str, str]:
    """What the cell trained and evaluated on: the synthetic benchmark's content checksum (equal
    checksums: the same decoded pixels, answers and ground truth), else the manifests' sha256."""
    if cfg.dataset_name == SYNTHETIC:
        from core.data.synthetic import benchmark_checksum

        return {"dataset": cfg.dataset_name, "content_checksum": benchmark_checksum(cfg.data_root)}
    location = dataset_class(cfg).data_location(cfg)
    files = [location] if location.is_file() else sorted(location.rglob("*.jsonl"))
    files += [] if location.is_file() else sorted(location.rglob("*.csv"))
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(location.parent)).encode())
        digest.update(path.read_bytes())
    return {"dataset": cfg.dataset_name, "manifest_sha256": digest.hexdigest()}


def unpruned_config(cfg: ExperimentConfig) -> ExperimentConfig:
    """The same experiment with nothing pruned: the reference a cell's speed-up is measured
    against (same geometry, same LM, same data)."""
    sections = cfg.to_dict()
    pruning = sections["pruning"]
    sections["pruning"] = {
        "method": reference_method(),
        "ratio": 0.0,
        **{k: pruning[k] for k in ("prune_at", "prune_from_frame", "seed") if k in pruning},
    }
    return ExperimentConfig.from_dict(sections)


def changed_keys(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Experiment keys whose values differ (runtime-only keys left out)."""
    keys = (set(old) | set(new)) - set(RUNTIME_KEYS)
    return sorted(k for k in keys if old.get(k) != new.get(k))


class NoValidClips(RuntimeError):
    """A cell trained on no decodable clip, or evaluated none: its numbers would mean nothing."""


def bad_clip_report(datasets: Sequence[Any]) -> str:
    """`<bad>/<clips> bad; first: <error>` over the distinct videos of `datasets`, decoding each
    here (only on the failure path: every clip seen so far was bad)."""
    seen: dict[str, str] = {}
    for dataset in datasets:
        for record in dataset.records:
            key = str(record.video)
            if key in seen:
                continue
            clip = dataset.load_frames(record)
            seen[key] = "" if clip.valid.any() else (clip.error or f"{key}: {clip.reason}")
    bad = [why for why in seen.values() if why]
    first = f"; first: {bad[0]}" if bad else ""
    return f"{len(bad)}/{len(seen)} bad{first}"


@dataclass
class CellData:
    """The datasets of a cell: training segments (caption pre-training, then the task) and val."""

    vocab_size: int
    segments: list[TaskSegment]
    val: Any

    @property
    def total_steps(self) -> int:
        return self.segments[-1].stop


@dataclass
class Optimisation:
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler


class _LogTo(TrainCallback):
    """Training metrics to the run logger, the step to status.json (the launcher's heartbeat)."""

    def __init__(self, logger: RunLogger, status: CellStatus | None) -> None:
        self.logger, self.status = logger, status

    def on_log(self, metrics: dict[str, Any], step: int) -> None:
        self.logger.log(metrics, step, "train")
        if self.status:
            self.status.update(step)


class CellRun:
    """One cell run; `run()` returns the result dict (also written to result.json).

    `callbacks` observe training (progress displays, tests that interrupt a run)."""

    def __init__(
        self, cell_dir: str | os.PathLike[str], callbacks: Sequence[TrainCallback] = ()
    ) -> None:
        self.dir = Path(cell_dir).resolve()
        self.cfg, self.meta = load_cell_config(self.dir)
        self.cell_id = self.meta.get("cell_id") or self.cfg.identity_hash()
        self.callbacks = list(callbacks)
        self.state = TrainState()
        self.init_info: dict[str, Any] = {}
        self.fsdp = False  # set by `shard`: the model is FSDP-sharded over the ranks
        self.warnings: list[str] = []

    def run(self) -> dict[str, Any]:
        finished = read_result(self.dir)  # a torn or invalid result.json is not done: rerun
        if finished is not None:
            return finished
        dist = init_distributed()
        status = CellStatus(self.dir) if dist.rank == 0 else None
        if status:
            status.start()
            remove_temp_files(self.dir / CHECKPOINT_DIR)  # of a writer killed mid-write
        try:
            return self._run(dist, status)
        except NonFiniteLoss as exc:
            if status:
                status.fail(str(exc), exc.step)
            raise
        except BaseException as exc:
            if status:
                status.fail(f"{type(exc).__name__}: {exc}", self.state.step)
            raise

    def _run(self, dist: DistInfo, status: CellStatus | None) -> dict[str, Any]:
        started = time.perf_counter()
        device = self.setup(dist)
        data = self.build_data()
        model = self.build_model(data.vocab_size, device)
        self.shard(model, device, dist)
        optimisation = self.build_optimisation(model, data.total_steps)
        self.resume(model, optimisation)
        logger = self.make_logger(dist, status)
        tick = time.perf_counter()
        parallel = self.wrap_parallel(model, device, dist)
        self.train(parallel, optimisation, data, device, dist, _LogTo(logger, status))
        self.check_trained(data)
        timing = {"train_s": time.perf_counter() - tick}
        model = self.evaluation_model(model, data.vocab_size, device)
        if dist.rank != 0:
            logger.finish()
            return {}
        metrics, ev = self.evaluate(model, data, device)
        timing["eval_s"] = ev["eval_s"]
        logger.log(
            {f"val/{k}": v for k, v in metrics.items() if isinstance(v, int | float)},
            self.state.step,
            "eval",
        )
        efficiency = self.measure(model, data, device, ev)
        keep_example = self.save_diagnostics(model, data, device)
        logger.image(
            "diagnostics/keep_map",
            keep_map_image(keep_example),
            self.state.step,
            f"{self.cfg.pruning.method} at ratio {self.cfg.effective_ratio:g}: kept windows of "
            "one validation clip (dropped ones dimmed)",
        )
        timing["wall_s"] = time.perf_counter() - started
        result = self.result(metrics, efficiency, timing, device, status, dist.world_size)
        logger.summary({**metrics, **efficiency})
        write_result(self.dir, result)
        if status:
            status.finish(self.state.step)
        logger.finish()
        return result

    # ---- steps, in order ---------------------------------------------------------------------
    def setup(self, dist: DistInfo) -> torch.device:
        """Device, threads and seeds."""
        device = resolve_device(self.cfg.train.device)
        if device.type == "cuda" and dist.world_size > 1:
            device = torch.device("cuda", dist.local_rank)
        if self.cfg.train.num_threads:
            torch.set_num_threads(self.cfg.train.num_threads)
        seed_everything(self.cfg.train.seed)
        return device

    def build_data(self) -> CellData:
        """Prepare the data once, then the tokenizer and the datasets of every segment."""
        cfg, d = self.cfg, self.cfg.data
        prepare_data(d)
        tokenizer = build_tokenizer(d, cfg.lm.tokenizer)
        segments: list[TaskSegment] = []
        if cfg.train.caption_steps:
            captions = build_dataset(dataclasses.replace(d, task="caption"), d.split, tokenizer)
            segments.append(TaskSegment("caption", captions, 0, cfg.train.caption_steps))
        start = cfg.train.caption_steps
        task = build_dataset(d, d.split, tokenizer)
        segments.append(TaskSegment(d.task, task, start, start + cfg.train.steps))
        val_cfg = dataclasses.replace(d, max_samples=d.max_eval_samples or cfg.eval.max_samples)
        val = build_dataset(val_cfg, d.eval_split, tokenizer)
        return CellData(cfg.lm.vocab_size or tokenizer.vocab_size, segments, val)

    def build_model(self, vocab_size: int, device: torch.device) -> VideoVLM:
        """The VLM, seeded, then initialised from its base cell (`train.init_cell`) or a
        checkpoint (`train.init_from`) when set: every weight but the reducer's, which stays
        freshly initialised (a fine-tuned reducer starts from scratch on a pretrained model)."""
        torch.manual_seed(self.cfg.train.seed)
        model = VideoVLM(self.cfg, vocab_size).to(device)
        source = self.init_source()
        if source is not None:
            weights, step = load_model_weights(source)
            load_all_but_reducer(model, weights, source)
            self.init_info = {"checkpoint": str(source), "step": step}
        return model

    def init_source(self) -> Path | None:
        """The checkpoint this cell starts from, checked before any training."""
        train = self.cfg.train
        if train.init_from:
            return Path(train.init_from)
        if not train.init_cell:
            return None
        base = self.dir.parent / train.init_cell
        if read_result(base) is None:
            raise FileNotFoundError(
                f"train.init_cell={train.init_cell}: its base cell {base} has not finished (no "
                "valid result.json). Fix: run the grid's base stage first (the launcher orders "
                "the stages), or relaunch the grid."
            )
        # its final checkpoint: last.pt, or last/ when it ran under FSDP (never an older prev)
        final = [p for p in resume_points(base / CHECKPOINT_DIR) if p.path.name in FINAL]
        if not final:
            raise FileNotFoundError(
                f"train.init_cell={train.init_cell}: its base cell {base} has no readable final "
                "checkpoint (checkpoints/last.pt or checkpoints/last/). Fix: relaunch the base "
                "cell with force=true."
            )
        return final[0].path

    def shard(self, model: nn.Module, device: torch.device, dist: DistInfo) -> None:
        """Activation checkpointing (`train.activation_checkpointing`) and, under torchrun with
        `train.parallel=fsdp`, FSDP2 per block; in place, before the optimiser sees the
        parameters (FSDP replaces them with shards)."""
        t = self.cfg.train
        if t.activation_checkpointing:
            apply_activation_checkpointing(model)
        if dist.world_size > 1 and t.parallel == "fsdp":
            shard_model(model, device, t.precision, t.fsdp_cpu_offload)
            self.fsdp = True

    def build_optimisation(self, model: nn.Module, total_steps: int) -> Optimisation:
        optimizer = build_optimizer(model, self.cfg.train)
        return Optimisation(optimizer, build_scheduler(optimizer, self.cfg.train, total_steps))

    def resume(self, model: nn.Module, optimisation: Optimisation) -> None:
        """Continue from the cell's newest good checkpoint, `last.pt` or sharded `last/` (either
        loads into a plain or an FSDP model, on any number of ranks); refuse one made under
        another config. A sharded checkpoint whose shards fail to load falls back, with a
        warning, to the next older one."""
        ck: dict[str, Any] | None = None
        for point in resume_points(self.dir / CHECKPOINT_DIR):
            if point.state.get("config_hash") != self.cfg.identity_hash():
                changed = changed_keys(point.state.get("config", {}), self.cfg.flat())
                raise ValueError(
                    f"{self.dir}: refusing to resume, the config changed since the checkpoint "
                    f"({', '.join(changed) or 'unknown keys'}). Fix: restore those values, or "
                    "relaunch with force=true to start the cell over (old results are moved "
                    "aside)."
                )
            if not point.sharded:
                load_full_checkpoint(point.state, model, optimisation.optimizer)
            else:
                try:  # collective: a shard unreadable on any rank fails on every rank
                    load_sharded_checkpoint(point.path, model, optimisation.optimizer)
                except Exception as exc:
                    warnings.warn(
                        f"{point.path}: its shards do not load ({type(exc).__name__}: {exc}); "
                        "falling back to the next older checkpoint, if any",
                        stacklevel=2,
                    )
                    continue
            ck = point.state
            break
        if ck is None:
            return
        optimisation.scheduler.load_state_dict(ck["scheduler"])
        restore_rng_state(ck["rng"])
        self.state.step = int(ck["step"])
        self.state.skipped_batches = int(ck.get("skipped_batches", 0))
        self.state.step_times = list(ck.get("step_times", []))
        self.state.last_loss = float(ck.get("last_loss", float("nan")))
        drop_train_rows_after(self.dir / METRICS_FILE, self.state.step)

    def wrap_parallel(self, model: nn.Module, device: torch.device, dist: DistInfo) -> nn.Module:
        """DDP over every rank when the cell runs under torchrun with `train.parallel=ddp`; the
        model itself otherwise (single process, or already sharded by `shard`)."""
        if dist.world_size <= 1 or self.fsdp:
            return model
        return torch.nn.parallel.DistributedDataParallel(
            model,
            device_ids=[device.index] if device.type == "cuda" else None,
            # a reducer skipped on some steps (nothing to prune) leaves its parameters unused
            find_unused_parameters=model.vision.reducer is not None,
        )

    def make_logger(self, dist: DistInfo, status: CellStatus | None) -> RunLogger:
        return make_logger(
            self.cfg.logging,
            self.dir,
            run_name=self.meta.get("name", self.cell_id),
            cell_id=self.cell_id,
            flat_config={**self.cfg.flat(), "cell_id": self.cell_id, "grid": self.grid},
            attempt=status.attempts if status else 1,
            rank=dist.rank,
            group=self.grid or self.dir.parent.name,
        )

    def train(
        self,
        model: nn.Module,
        optimisation: Optimisation,
        data: CellData,
        device: torch.device,
        dist: DistInfo,
        log: TrainCallback,
    ) -> None:
        cfg = self.cfg
        loop = TrainLoop(
            model=model,
            optimizer=optimisation.optimizer,
            scheduler=optimisation.scheduler,
            device=device,
            collate=collate,
            checkpoint_path=self.dir / CHECKPOINT,
            precision=cfg.train.precision,
            num_workers=cfg.data.num_workers,
            rank=dist.rank,
            world_size=dist.world_size,
            extra_state=lambda: {"config": cfg.flat(), "config_hash": cfg.identity_hash()},
            callbacks=[log, *self.progress(dist), *self.callbacks],
            sharded=self.fsdp,
        )
        train(cfg.train, data.segments, loop, self.state)

    def evaluation_model(self, model: VideoVLM, vocab_size: int, device: torch.device) -> VideoVLM:
        """The trained model as a plain module for rank 0's evaluation and timing: activation
        checkpointing removed; under FSDP (collective) a full copy gathered from the shards."""
        if not self.fsdp:
            remove_activation_checkpointing(model)
            return model
        state = full_model_state(model)
        if not state:  # ranks other than 0 do not evaluate
            return model
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            plain = VideoVLM(self.cfg, vocab_size).to(device)
        plain.load_state_dict(state)
        return plain

    def progress(self, dist: DistInfo) -> list[TrainCallback]:
        """The on-screen progress of this cell's training (rank 0 only)."""
        if dist.rank != 0 or self.cfg.logging.progress == "off":
            return []
        return [TrainProgress(self.meta.get("name", self.cell_id), self.cfg.logging.progress)]

    def evaluate(
        self, model: nn.Module, data: CellData, device: torch.device
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Accuracy (overall, per type, chance) or caption loss on the validation split."""
        d = self.cfg.data
        loader = eval_loader(data.val, collate, self.cfg.eval.batch_size, d.num_workers)
        ev = evaluate(model, loader, device, self.cfg.train.precision)
        caption = d.task == "caption"
        chance = {} if caption else chance_level(data.val.qa_rows())
        metrics = {
            "accuracy": None if caption else ev["accuracy"],
            "accuracy_by_type": {} if caption else ev["accuracy_by_type"],
            "count_by_type": ev["count_by_type"],
            "chance": chance.get("overall"),
            "chance_by_type": {k: v for k, v in chance.items() if k != "overall"},
            "caption_loss": ev["loss"] if caption else None,
            "caption_perplexity": ev["perplexity"] if caption else None,
            "val_loss": ev["loss"],
            "train_loss": self.state.last_loss,
            "eval_samples": ev["eval_samples"],
            "bad_samples": ev["bad_samples"],
            "skipped_batches": self.state.skipped_batches,
            "reducer_stats": {
                k.removeprefix("reducer/"): v
                for k, v in ev["stats"].items()
                if k.startswith("reducer/")
            },
        }
        self.warnings += REDUCERS.get(self.cfg.pruning.method).warnings(ev["stats"])
        self.check_evaluated(data, ev["bad_samples"], ev["eval_samples"])
        return metrics, ev

    def check_trained(self, data: CellData) -> None:
        """Fail a cell that trained on no valid batch (every step skipped: no decodable clip);
        warn when the skipped share exceeds eval.max_bad_fraction."""
        steps, skipped = self.state.step, self.state.skipped_batches
        if steps and skipped >= steps:
            raise NoValidClips(
                "no decodable training clips: "
                + bad_clip_report([seg.dataset for seg in data.segments])
                + ". Fix: check the videos the train manifest points at (data.data_root, "
                "data.manifest) with the data doctor."
            )
        limit = self.cfg.eval.max_bad_fraction
        if steps and skipped / steps > limit:
            self.warnings.append(
                f"{skipped}/{steps} training steps had no decodable clip (more than "
                f"eval.max_bad_fraction={limit:g})"
            )

    def check_evaluated(self, data: CellData, bad: int, total: int) -> None:
        """Fail a cell that evaluated no valid clip; warn when the share of undecodable
        validation clips (counted as wrong) exceeds eval.max_bad_fraction."""
        if total and bad >= total:
            raise NoValidClips(
                "no decodable validation clips: "
                + bad_clip_report([data.val])
                + ". Fix: check the videos the validation manifest points at with the data doctor."
            )
        limit = self.cfg.eval.max_bad_fraction
        if total and bad / total > limit:
            self.warnings.append(
                f"{bad}/{total} validation clips undecodable ({bad / total:.1%}, more than "
                f"eval.max_bad_fraction={limit:g}); they count as wrong answers"
            )

    def measure(
        self, model: VideoVLM, data: CellData, device: torch.device, ev: dict[str, Any]
    ) -> dict[str, Any]:
        """Token counts and analytic FLOPs; measured speed-ups over the unpruned model of the same
        geometry, timed side by side in this process (train step and prefill); peak memory."""
        cfg = self.cfg
        flops = analytic_flops(cfg, vocab_size=data.vocab_size)
        full = cfg.data.max_frames * cfg.tokens_per_frame
        times = self.state.step_times[5:] or self.state.step_times
        eff: dict[str, Any] = {
            "vision_tokens_llm": cfg.kept_tokens(),
            "vision_tokens_full": full,
            "kept_fraction": cfg.kept_tokens() / full,
            "vision_tokens_final": flops.vision_tokens_final,  # after in-LLM drops
            "llm_kept_fraction": flops.llm_kept_fraction,  # layer-averaged
            **{
                f"{k}_gflops": v
                for k, v in flops.to_dict().items()
                if k in ("vit", "scorer", "reducer", "connector", "llm", "total")
            },
            "train_step_s": float(np.mean(times)) if times else float("nan"),
            "eval_clips_per_s": ev["eval_clips_per_s"],
        }
        reference_cfg = unpruned_config(cfg)
        unpruned = analytic_flops(reference_cfg, vocab_size=data.vocab_size).total
        eff["speedup_flops_analytic"] = unpruned / flops.total
        if not cfg.eval.measure_efficiency:
            return eff
        val = data.val
        n = min(cfg.eval.efficiency_batch_size, len(val))
        batch = to_device(collate([val[i] for i in range(n)]), device)
        single = to_device(collate([val[0]]), device)
        reference = VideoVLM(reference_cfg, data.vocab_size).to(device)
        reference.load_state_dict(model.state_dict(), strict=False)  # same weights, no reducer

        def train_step(m: nn.Module) -> Callable[[], None]:
            def step() -> None:
                m.train()
                m.zero_grad(set_to_none=True)
                m(batch).loss.backward()

            return step

        def prefill(m: nn.Module) -> Callable[[], None]:
            def forward() -> None:
                m.eval()
                with torch.no_grad():
                    m(single)

            return forward

        spec = {"warmup": cfg.eval.efficiency_warmup, "iters": cfg.eval.efficiency_iters}
        train_cmp = compare_interleaved(
            train_step(model), train_step(reference), **spec, device=device
        )
        prefill_cmp = compare_interleaved(prefill(model), prefill(reference), **spec, device=device)
        memory = peak_memory_info(train_step(model), device)
        model.zero_grad(set_to_none=True)
        model.eval()
        eff.update(
            {
                "forward_backward_s": train_cmp["candidate_s"],
                "unpruned_forward_backward_s": train_cmp["reference_s"],
                "speedup_train_measured": train_cmp["speedup"],
                "speedup_train_measured_q1": train_cmp["speedup_q1"],
                "speedup_train_measured_q3": train_cmp["speedup_q3"],
                "prefill_latency_s": prefill_cmp["candidate_s"],
                "unpruned_prefill_latency_s": prefill_cmp["reference_s"],
                "speedup_prefill_measured": prefill_cmp["speedup"],
                "speedup_prefill_measured_q1": prefill_cmp["speedup_q1"],
                "speedup_prefill_measured_q3": prefill_cmp["speedup_q3"],
                "measured_over_analytic": train_cmp["speedup"] / eff["speedup_flops_analytic"],
                "timing_pairs": train_cmp["pairs"],
                "efficiency_batch_size": n,
                "peak_memory_mb": memory["peak_memory_mb"],
                "memory_method": memory["method"],
            }
        )
        return eff

    def save_diagnostics(self, model: VideoVLM, data: CellData, device: torch.device) -> Path:
        """The keep map of one fixed validation clip (for the keep-map figure); its path."""
        sample = data.val[0]
        return save_keep_example(
            model,
            sample,
            to_device(collate([sample]), device),
            self.dir / DIAGNOSTICS_DIR,
            self.cfg.data.pixel_mean,
            self.cfg.data.pixel_std,
            self.cfg.pruning.method,
            self.cfg.effective_ratio,
        )

    def result(
        self,
        metrics: dict[str, Any],
        efficiency: dict[str, Any],
        timing: dict[str, float],
        device: torch.device,
        status: CellStatus | None,
        world_size: int = 1,
    ) -> dict[str, Any]:
        return {
            "cell_id": self.cell_id,
            "grid": self.grid,
            "name": self.meta.get("name", self.cell_id),
            "axes": self.meta.get("axes", {}),
            "config": self.cfg.flat(),
            "metrics": metrics,
            "efficiency": efficiency,
            "hardware": {**hardware_info(device), "world_size": world_size},  # ranks trained
            "environment": software_versions(),
            "data": data_identity(self.cfg.data),
            "timing": timing,
            "init": {"cell": self.cfg.train.init_cell, **self.init_info},
            "display": display_metadata(self.cfg),
            "warnings": list(self.warnings),
            "git_commit": status.git_commit if status else "unknown",
            "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        }

    # ---- small helpers -----------------------------------------------------------------------
    @property
    def grid(self) -> str:
        return str(self.meta.get("grid", ""))


def run_cell(
    cell_dir: str | os.PathLike[str], callbacks: Sequence[TrainCallback] = ()
) -> dict[str, Any]:
    """Run (or resume, or return the finished result of) the cell in `cell_dir`."""
    return CellRun(cell_dir, callbacks).run()


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Run one experiment cell directory.")
    parser.add_argument("cell_dir")
    args = parser.parse_args(argv)
    try:
        result = run_cell(args.cell_dir)
    finally:
        leave_process_group()
    acc = result.get("metrics", {}).get("accuracy")
    print(f"{args.cell_dir}: done, accuracy={acc}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
