"""The experiment cell: frozen config → data and model → train → evaluate → measure → results.

`run_cell(cell_dir)` is what every launcher backend calls. It reads `cell_dir/config.yaml` (the
resolved config plus a `cell` block), resumes from `checkpoints/last.pt` when present (refusing a
changed config), and writes `status.json`, `metrics.jsonl`, `diagnostics/` and finally `result.json`
atomically: its presence means the cell is done, so finished results are never redone or lost.
Under torchrun/DDP every rank trains; only rank 0 writes.
"""

from __future__ import annotations

import dataclasses
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.config import ExperimentConfig
from core.io import read_json, read_yaml, write_json_atomic
from core.models.vlm import VideoVLM
from core.training.batches import eval_loader
from core.training.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    restore_rng_state,
)
from core.training.evaluate import chance_level, evaluate, to_device
from core.training.schedule import build_optimizer, build_scheduler
from core.training.seeding import seed_everything
from core.training.trainer import NonFiniteLoss, Phase, TrainState, train, unwrap

CHECKPOINT = "checkpoints/last.pt"


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "train.device=cuda but no CUDA device is visible. Fix: use train.device=cpu"
        )
    return torch.device(name)


def load_cell_config(cell_dir: Path) -> tuple[ExperimentConfig, dict[str, Any]]:
    path = cell_dir / "config.yaml"
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


def prepare_data(cfg: ExperimentConfig) -> None:
    """Generate the synthetic benchmark on first use (cached) when the config asks for it."""
    d = cfg.data
    manifest = Path(d.data_root) / "raw" / d.dataset_name
    if d.generate_synthetic and d.dataset_type in ("qa_jsonl", "webvid") and not manifest.exists():
        from core.data.synthetic import ensure_synthetic

        ensure_synthetic(
            d.data_root,
            d.synthetic_train,
            d.synthetic_val,
            d.synthetic_seed,
            name=d.dataset_name,
            question_types=d.synthetic_question_types or None,
        )


def changed_keys(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    from core.config import RUNTIME_KEYS

    keys = (set(old) | set(new)) - set(RUNTIME_KEYS)
    return sorted(k for k in keys if old.get(k) != new.get(k))


class Cell:
    """One cell run; `run()` returns the result dict (also written to result.json)."""

    def __init__(self, cell_dir: str | os.PathLike[str]) -> None:
        self.dir = Path(cell_dir).resolve()
        self.cfg, self.meta = load_cell_config(self.dir)
        self.cell_id = self.meta.get("cell_id") or self.cfg.identity_hash()

    def run(self) -> dict[str, Any]:
        from core.training.distributed import init_distributed
        from core.training.status import CellStatus

        result_path = self.dir / "result.json"
        if result_path.exists():
            return read_json(result_path)
        dist = init_distributed()
        status = CellStatus(self.dir) if dist.rank == 0 else None
        if status:
            status.start()
        self.state = TrainState()
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

    # ------------------------------------------------------------------------------------
    def _run(self, dist, status) -> dict[str, Any]:
        from core.data import build_dataset, build_tokenizer, collate
        from core.efficiency import analytic_flops, hardware_info, measure_model
        from core.training.logger import make_logger

        cfg, started = self.cfg, time.perf_counter()
        device = resolve_device(cfg.train.device)
        if device.type == "cuda" and dist.world_size > 1:
            device = torch.device("cuda", dist.local_rank)
        if cfg.train.num_threads:
            torch.set_num_threads(cfg.train.num_threads)
        seed_everything(cfg.train.seed)
        prepare_data(cfg)
        tokenizer = build_tokenizer(cfg.data, cfg.lm.tokenizer)
        vocab = cfg.lm.vocab_size or tokenizer.vocab_size
        d = cfg.data
        phases: list[Phase] = []
        if cfg.train.caption_steps:
            captions = build_dataset(dataclasses.replace(d, task="caption"), d.split, tokenizer)
            phases.append(Phase("caption", captions, 0, cfg.train.caption_steps))
        task = build_dataset(d, d.split, tokenizer)
        c0 = cfg.train.caption_steps
        phases.append(Phase(d.task, task, c0, c0 + cfg.train.steps))
        val_cfg = dataclasses.replace(d, max_samples=d.max_eval_samples or cfg.eval.max_samples)
        val = build_dataset(val_cfg, d.eval_split, tokenizer)

        torch.manual_seed(cfg.train.seed)
        model = VideoVLM(cfg, vocab).to(device)
        if cfg.train.init_from:
            weights = load_checkpoint(cfg.train.init_from)
            model.load_state_dict(weights.get("model", weights), strict=False)
        optimizer = build_optimizer(model, cfg.train, scorer_prefixes=("reducer",))
        total = phases[-1].stop
        scheduler = build_scheduler(optimizer, cfg.train, total)
        self._maybe_resume(model, optimizer, scheduler)

        train_model: torch.nn.Module = model
        if dist.world_size > 1:
            train_model = torch.nn.parallel.DistributedDataParallel(
                model,
                device_ids=[device.index] if device.type == "cuda" else None,
                find_unused_parameters=cfg.pruning.method != "none",
            )
        logger = make_logger(
            cfg.logging,
            self.dir,
            run_name=self.meta.get("name", self.cell_id),
            cell_id=self.cell_id,
            flat_config={**cfg.flat(), "cell_id": self.cell_id, "grid": self.meta.get("grid", "")},
            attempt=status.attempts if status else 1,
            rank=dist.rank,
            group=self.meta.get("grid", ""),
        )

        def log(metrics: dict, step: int) -> None:
            logger.log(metrics, step, "train")
            if status:
                status.update(step)

        t_train = time.perf_counter()
        train(
            train_model,
            cfg,
            phases,
            optimizer,
            scheduler,
            self.state,
            device,
            collate,
            self.dir / CHECKPOINT,
            log,
            rank=dist.rank,
            world_size=dist.world_size,
            extra_state=lambda: {"config": cfg.flat(), "config_hash": cfg.identity_hash()},
        )
        train_s = time.perf_counter() - t_train

        metrics, timing = {}, {"train_s": train_s}
        if dist.rank == 0:
            loader = eval_loader(val, collate, cfg.eval.batch_size, d.num_workers)
            use_amp = device.type == "cuda" and cfg.train.precision in ("auto", "bf16")
            ev = evaluate(model, loader, device, use_amp=use_amp)
            timing["eval_s"] = ev["eval_s"]
            is_caption = d.task == "caption"
            chance = {} if is_caption else chance_level(val.qa_rows())
            metrics = {
                "accuracy": None if is_caption else ev["accuracy"],
                "accuracy_by_type": {} if is_caption else ev["accuracy_by_type"],
                "count_by_type": ev["count_by_type"],
                "chance": chance.get("overall"),
                "chance_by_type": {k: v for k, v in chance.items() if k != "overall"},
                "caption_loss": ev["loss"] if is_caption else None,
                "caption_perplexity": ev["perplexity"] if is_caption else None,
                "val_loss": ev["loss"],
                "train_loss": self.state.last_loss,
                "eval_samples": ev["eval_samples"],
                "bad_samples": ev["bad_samples"],
                "skipped_batches": self.state.skipped_batches,
            }
            logger.log(
                {f"val/{k}": v for k, v in metrics.items() if isinstance(v, int | float)},
                self.state.step,
                "eval",
            )
            efficiency = self._efficiency(
                model, val, device, vocab, ev, analytic_flops, measure_model
            )
            self._keep_example(model, val, device)
            result = {
                "cell_id": self.cell_id,
                "grid": self.meta.get("grid", ""),
                "name": self.meta.get("name", self.cell_id),
                "axes": self.meta.get("axes", {}),
                "config": cfg.flat(),
                "metrics": metrics,
                "efficiency": efficiency,
                "hardware": hardware_info(device),
                "timing": {**timing, "wall_s": time.perf_counter() - started},
                "git_commit": status.git_commit if status else "unknown",
                "finished": datetime.now(UTC).isoformat(timespec="seconds"),
            }
            logger.summary({**metrics, **efficiency})
            write_json_atomic(self.dir / "result.json", result)
            status.finish()
            logger.finish()
            return result
        logger.finish()
        return {}

    def _maybe_resume(self, model, optimizer, scheduler) -> None:
        path = latest_checkpoint(self.dir / "checkpoints")
        if path is None:
            return
        ck = load_checkpoint(path)
        if ck.get("config_hash") != self.cfg.identity_hash():
            changed = changed_keys(ck.get("config", {}), self.cfg.flat())
            raise ValueError(
                f"{self.dir}: refusing to resume, the config changed since the checkpoint "
                f"({', '.join(changed) or 'unknown keys'}). Fix: restore those values, or "
                "relaunch with force=true to start the cell over (old results are moved aside)."
            )
        model.load_state_dict(ck["model"])
        optimizer.load_state_dict(ck["optimizer"])
        scheduler.load_state_dict(ck["scheduler"])
        restore_rng_state(ck["rng"])
        self.state.step = int(ck["step"])
        self.state.skipped_batches = int(ck.get("skipped_batches", 0))
        self.state.step_times = list(ck.get("step_times", []))

    def _efficiency(self, model, val, device, vocab, ev, analytic_flops, measure_model) -> dict:
        cfg = self.cfg
        flops = analytic_flops(cfg, vocab_size=vocab)
        times = self.state.step_times[5:] or self.state.step_times
        eff = {
            "vision_tokens_llm": cfg.kept_tokens(),
            "vision_tokens_full": cfg.data.max_frames * cfg.tokens_per_frame,
            "kept_fraction": cfg.kept_tokens() / (cfg.data.max_frames * cfg.tokens_per_frame),
            **{
                f"{k}_gflops": v
                for k, v in flops.to_dict().items()
                if k in ("vit", "scorer", "reducer", "connector", "llm", "total")
            },
            "train_step_s": float(np.mean(times)) if times else float("nan"),
            "eval_clips_per_s": ev["eval_clips_per_s"],
        }
        if cfg.eval.measure_efficiency:
            from core.data import collate

            n = min(cfg.eval.efficiency_batch_size, len(val))
            batch = to_device(collate([val[i] for i in range(n)]), device)
            single = to_device(collate([val[0]]), device)

            def forward():
                with torch.no_grad():
                    model(single)

            def train_step():
                model.zero_grad(set_to_none=True)
                model(batch).loss.backward()

            model.eval()
            measured = measure_model(
                forward,
                train_step,
                warmup=cfg.eval.efficiency_warmup,
                iters=cfg.eval.efficiency_iters,
                device=device,
            )
            model.zero_grad(set_to_none=True)
            eff.update(
                {
                    "prefill_latency_s": measured["forward_s"],
                    "forward_backward_s": measured["forward_backward_s"],
                    "peak_memory_mb": measured["peak_memory_mb"],
                    "memory_method": measured.get("method", ""),
                }
            )
        return eff

    def _keep_example(self, model, val, device) -> None:
        """Save which windows of one fixed val clip reached the LLM (for the keep-map figure)."""
        from core.data import collate

        sample = val[0]
        batch = to_device(collate([sample]), device)
        model.eval()
        with torch.no_grad():
            visual = unwrap(model).encode(batch)
        win = unwrap(model).vision.windows
        f = batch["pixel_values"].shape[1]
        keep = visual.diagnostics.get("keep")
        keep = torch.ones(1, f, win.num_windows, dtype=torch.bool) if keep is None else keep
        frames = ((sample["pixel_values"] * 0.5 + 0.5).clamp(0, 1) * 255).to(torch.uint8)
        out = self.dir / "diagnostics"
        out.mkdir(exist_ok=True)
        np.savez_compressed(
            out / "keep_example.npz",
            frames=frames.permute(0, 2, 3, 1).numpy(),
            keep=keep[0].view(f, win.per_side, win.per_side).cpu().numpy(),
            frame_mask=sample["frame_mask"].numpy(),
            window=np.array(win.window),
            clip_id=np.array(str(sample.get("clip_id", ""))),
            question=np.array(str(sample.get("question", ""))),
            answer=np.array(str(sample.get("answer", ""))),
            method=np.array(self.cfg.pruning.method),
            ratio=np.array(self.cfg.effective_ratio),
        )


def run_cell(cell_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Run (or resume, or return the finished result of) the cell in `cell_dir`."""
    return Cell(cell_dir).run()


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Run one experiment cell directory.")
    parser.add_argument("cell_dir")
    args = parser.parse_args(argv)
    result = run_cell(args.cell_dir)
    acc = result.get("metrics", {}).get("accuracy")
    print(f"{args.cell_dir}: done, accuracy={acc}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
