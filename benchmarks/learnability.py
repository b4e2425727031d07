"""Is the tiny local preset real? Accuracy vs chance per cell, and where the trained base finds its
evidence, side by side in one run.

Runs cells of the tiny preset on the synthetic benchmark through the real cell runner
(`core.cell.run_cell`; default: unpruned joint_decoder, random pruning at 0.7 and the oracle at 0.7)
and appends accuracy (overall and per question type), chance, train/eval/wall seconds and the machine
to `benchmarks/results/learnability.md`. With `--probe`, the trained unpruned base is evaluated again
with fixed temporal crops (the dropped frames masked out: frame_mask False and zero pixels) and,
zero-shot, with the oracle and random reducers at ratio 0.5, next to the fraction of questions each
crop can answer at all (from the scene metadata, core.data.synthetic.evidence).

    python benchmarks/learnability.py [--cells none,random@0.5] [--probe] [--seed S] [--steps N]
                                      [--set vision.patch_size=16 --set ...]
    python benchmarks/learnability.py --smoke --out /tmp/l.md   # 2 cells, a few steps, tiny data
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import dataclasses
import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
import yaml

import core.cell
from core.cell import run_cell
from core.config import ExperimentConfig
from core.data import build_dataset, build_tokenizer, collate, prepare_data
from core.data.synthetic.evidence import CROPS
from core.efficiency import hardware_info
from core.models.vlm import VideoVLM
from core.training.batches import eval_loader
from core.training.evaluate import evaluate

CELLS = "none,random@0.7,oracle@0.7"
PROBE_RATIO = 0.5


def parse_cells(text: str) -> list[tuple[str, float]]:
    """'none,random@0.5' → [("none", 0.0), ("random", 0.5)]."""
    cells = []
    for item in text.split(","):
        method, _, ratio = item.strip().partition("@")
        try:
            cells.append((method, float(ratio or 0.0)))
        except ValueError:
            raise SystemExit(f"--cells {item!r}: expected method@ratio, e.g. random@0.5") from None
    return cells


def parse_value(text: str) -> Any:
    """A `--set` value: a number, else a YAML scalar/list (booleans, [a, b]); never evaluated."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return yaml.safe_load(text)


def nested(overrides: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        section, dot, field = key.partition(".")
        if not sep or not dot:
            raise SystemExit(f"--set {item!r}: expected section.field=value, e.g. train.lr=2e-3")
        out.setdefault(section, {})[field] = parse_value(value)
    return out


def cell_config(base: dict[str, dict[str, Any]], method: str, ratio: float) -> dict:
    cfg = json.loads(json.dumps(base))
    cfg.setdefault("pruning", {}).update({"method": method, "ratio": ratio})
    cfg.setdefault("logging", {})["wandb"] = "disabled"
    if method == "oracle":
        cfg.setdefault("data", {})["ground_truth"] = True
    return cfg


def warm_frame_cache(base: dict[str, dict[str, Any]]) -> float:
    """Generate the benchmark if needed and decode every clip once into the shared frame cache, so
    the per-cell times below are training times, not the one-time decoding of a fresh dataset."""
    tick = time.perf_counter()
    cfg = ExperimentConfig.from_dict(cell_config(base, "oracle", 0.7))
    prepare_data(cfg.data)
    tokenizer = build_tokenizer(cfg.data, cfg.lm.tokenizer)
    for split in (cfg.data.split, cfg.data.eval_split):
        dataset = build_dataset(cfg.data, split, tokenizer)
        for index in range(len(dataset)):
            dataset[index]
    return time.perf_counter() - tick


@contextlib.contextmanager
def keep_final_weights(into: dict[str, Any]) -> Iterator[None]:
    """Collect the weights a cell evaluates (its final ones; the cell keeps no final checkpoint)."""
    real = core.cell.evaluate

    def evaluating(model, *args, **kwargs):
        into["state"] = {name: t.detach().clone() for name, t in model.state_dict().items()}
        return real(model, *args, **kwargs)

    core.cell.evaluate = evaluating
    try:
        yield
    finally:
        core.cell.evaluate = real


class CroppedFrames:
    """A loader whose batches keep only the sampled frames `kept` (others: invalid, zero pixels)."""

    def __init__(self, loader: Any, kept: tuple[int, ...]) -> None:
        self.loader, self.kept = loader, kept

    def __iter__(self) -> Iterator[dict]:
        for batch in self.loader:
            drop = torch.ones(batch["frame_mask"].shape[1], dtype=torch.bool)
            drop[list(self.kept)] = False
            batch["frame_mask"] = batch["frame_mask"] & ~drop
            batch["pixel_values"] = batch["pixel_values"].masked_fill(drop[:, None, None, None], 0)
            yield batch


def probe(base: dict[str, dict[str, Any]], state: dict[str, torch.Tensor]) -> dict[str, dict]:
    """Accuracy of the trained unpruned weights under each fixed crop and, zero-shot, under the
    oracle and random reducers at PROBE_RATIO: {condition: evaluate(...) result}."""
    device = torch.device("cpu")

    def model_for(method: str, ratio: float) -> tuple[ExperimentConfig, VideoVLM]:
        raw = cell_config(base, method, ratio)
        raw.setdefault("data", {})["ground_truth"] = True  # the oracle's masks, for every model
        cfg = ExperimentConfig.from_dict(raw)
        tokenizer = build_tokenizer(cfg.data, cfg.lm.tokenizer)
        model = VideoVLM(cfg, cfg.lm.vocab_size or tokenizer.vocab_size)
        unexpected = model.load_state_dict(state, strict=False).unexpected_keys
        if unexpected:
            raise RuntimeError(f"{method} model does not take the base's weights {unexpected}")
        return cfg, model

    cfg, unpruned = model_for("none", 0.0)
    tokenizer = build_tokenizer(cfg.data, cfg.lm.tokenizer)
    val = build_dataset(
        dataclasses.replace(cfg.data, max_samples=0), cfg.data.eval_split, tokenizer
    )
    loader = eval_loader(val, collate, cfg.eval.batch_size, 0)
    out = {"all frames": evaluate(unpruned, loader, device)}
    for crop, kept in CROPS.items():
        if crop != "oracle":
            out[crop] = evaluate(unpruned, CroppedFrames(loader, kept), device)
    for method in ("oracle", "random"):
        out[f"{method}@{PROBE_RATIO} zero-shot"] = evaluate(
            model_for(method, PROBE_RATIO)[1], loader, device
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=0, help="QA steps; 0 → the config default")
    parser.add_argument("--cells", default=CELLS, help=f"method@ratio list (default {CELLS})")
    parser.add_argument("--seed", type=int, default=None, help="train.seed (default: config)")
    parser.add_argument("--probe", action="store_true", help="crop/zero-shot probe of `none`")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--out", default="benchmarks/results/learnability.md")
    parser.add_argument(
        "--smoke", action="store_true", help="none and random@0.5, 4 steps, 24 clips in a temp dir"
    )
    args = parser.parse_args()
    if args.smoke:
        smoke_root = tempfile.mkdtemp(prefix="learnability-smoke-")
        atexit.register(shutil.rmtree, smoke_root, ignore_errors=True)
        args.cells, args.probe = "none,random@0.5", True
        args.overrides = [
            f"data.data_root={smoke_root}",
            "data.synthetic_train=16",
            "data.synthetic_val=8",
            "train.caption_steps=0",
            "train.steps=4",
            "train.batch_size=4",
            "eval.measure_efficiency=false",
            *args.overrides,
        ]
    cells = parse_cells(args.cells)
    if args.probe and ("none", 0.0) not in cells:
        raise SystemExit("--probe evaluates the unpruned cell: include none in --cells")
    base = nested(args.overrides)
    if args.steps:
        base.setdefault("train", {}).setdefault("steps", args.steps)
    if args.seed is not None:
        base.setdefault("train", {})["seed"] = args.seed
    warm_s = warm_frame_cache(base)
    print(f"benchmark generated/decoded into the frame cache in {warm_s:.0f} s", flush=True)
    rows, weights, probed = [], {}, {}
    with tempfile.TemporaryDirectory(prefix="learnability-") as tmp:
        for method, ratio in cells:
            cell_dir = Path(tmp) / f"{method}-{ratio}"
            cell_dir.mkdir()
            (cell_dir / "config.yaml").write_text(yaml.safe_dump(cell_config(base, method, ratio)))
            with keep_final_weights(weights):
                result = run_cell(cell_dir)
            rows.append((method, ratio, result))
            m = result["metrics"]
            print(
                f"{method}@{ratio}: accuracy {m['accuracy']:.3f} (chance {m['chance']:.3f}), "
                f"wall {result['timing']['wall_s']:.0f} s",
                flush=True,
            )
            if args.probe and method == "none":
                probed = probe(base, weights["state"])
    write_report(Path(args.out), args, rows, warm_s, probed, evidence(base))


def evidence(base: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per-type fractions of validation questions each crop can answer (from stats.json)."""
    cfg = ExperimentConfig.from_dict(cell_config(base, "none", 0.0))
    stats = Path(cfg.data.data_root) / "raw" / cfg.data.dataset_name / "stats.json"
    return json.loads(stats.read_text())["splits"][cfg.data.eval_split].get("evidence", {})


def probe_lines(probed: dict[str, dict], fractions: dict[str, dict[str, float]]) -> list[str]:
    types = sorted(probed["all frames"]["accuracy_by_type"])
    lines = [
        "Probe of the trained `none` base: accuracy, and in brackets the fraction of questions "
        f"the kept frames can answer at all. The crops keep 4 whole frames; ratio {PROBE_RATIO} "
        "prunes that share of the windows (frame 0 kept whole).",
        "",
        "| condition | all | " + " | ".join(types) + " |",
        "|---" * (2 + len(types)) + "|",
    ]
    for condition, ev in probed.items():
        crop = condition if condition in CROPS else ("oracle" if "oracle" in condition else None)

        def cell(qtype: str, acc: float, crop: str | None = crop) -> str:
            frac = fractions.get(qtype, {}).get(crop) if crop else None
            return f"{acc:.2f}" + (f" ({frac:.2f})" if frac is not None else "")

        per = " | ".join(cell(q, ev["accuracy_by_type"][q]) for q in types)
        lines.append(f"| {condition} | {cell('all', ev['accuracy'])} | {per} |")
    return [*lines, ""]


def write_report(
    path: Path,
    args: argparse.Namespace,
    rows: list,
    warm_s: float,
    probed: dict[str, dict],
    fractions: dict[str, dict[str, float]],
) -> None:
    hw = hardware_info("cpu")
    types = sorted(rows[0][2]["metrics"]["accuracy_by_type"])
    lines = [
        f"## {datetime.now(UTC).isoformat(timespec='seconds')} — {hw.get('device_name')}, "
        f"{hw.get('threads')} threads, torch {hw.get('torch')}",
        "",
        "`python benchmarks/learnability.py "
        + (f"--steps {args.steps} " if args.steps else "")
        + (f"--cells {args.cells} " if args.cells != CELLS else "")
        + (f"--seed {args.seed} " if args.seed is not None else "")
        + ("--probe " if args.probe else "")
        + " ".join(f"--set {o}" for o in args.overrides)
        + "`",
        "",
        "| cell | accuracy | chance | " + " | ".join(types) + " | train s | eval s | wall s |",
        "|---" * (6 + len(types)) + "|",
    ]
    for method, ratio, r in rows:
        m, t = r["metrics"], r["timing"]
        per = " | ".join(f"{m['accuracy_by_type'].get(q, float('nan')):.2f}" for q in types)
        lines.append(
            f"| {method}@{ratio} | {m['accuracy']:.3f} | {m['chance']:.3f} | {per} | "
            f"{t['train_s']:.0f} | {t.get('eval_s', 0):.0f} | {t['wall_s']:.0f} |"
        )
    lines += [
        "",
        f"One-time generation + decoding into the frame cache before the cells: {warm_s:.0f} s.",
        "",
    ]
    if probed:
        lines += probe_lines(probed, fractions)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fh.write("\n".join(lines) + "\n")
    print(f"appended to {path}")


if __name__ == "__main__":
    main()
