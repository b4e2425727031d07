"""Is the tiny local preset real? Accuracy vs chance and wall time per cell, side by side in one run.

Runs three cells of the tiny preset on the synthetic benchmark through the real cell runner
(`core.cell.run_cell`): unpruned joint_decoder, random pruning at 0.7 and the oracle at 0.7, and
appends accuracy (overall and per question type), chance, train/eval/wall seconds and the machine to
`benchmarks/results/learnability.md`. The targets (issue "experiment cell"): unpruned ≥ 85% with
chance ≤ 35% in ≤ 3 min per cell on 2 CPU cores; random@0.7 ≥ 5 points below; oracle@0.7 within 3.

    python benchmarks/learnability.py [--steps N] [--set vision.patch_size=16 --set ...]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from core.cell import prepare_data, run_cell
from core.config import ExperimentConfig
from core.data import build_dataset, build_tokenizer
from core.efficiency import hardware_info

CELLS = (
    ("none", 0.0),
    ("random", 0.7),
    ("oracle", 0.7),
)


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
    prepare_data(cfg)
    tokenizer = build_tokenizer(cfg.data, cfg.lm.tokenizer)
    for split in (cfg.data.split, cfg.data.eval_split):
        dataset = build_dataset(cfg.data, split, tokenizer)
        for index in range(len(dataset)):
            dataset[index]
    return time.perf_counter() - tick


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=0, help="QA steps; 0 → the config default")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--out", default="benchmarks/results/learnability.md")
    args = parser.parse_args()
    base = nested(args.overrides)
    if args.steps:
        base.setdefault("train", {}).setdefault("steps", args.steps)
    warm_s = warm_frame_cache(base)
    print(f"benchmark generated/decoded into the frame cache in {warm_s:.0f} s", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="learnability-") as tmp:
        for method, ratio in CELLS:
            cell_dir = Path(tmp) / f"{method}-{ratio}"
            cell_dir.mkdir()
            (cell_dir / "config.yaml").write_text(yaml.safe_dump(cell_config(base, method, ratio)))
            result = run_cell(cell_dir)
            rows.append((method, ratio, result))
            m = result["metrics"]
            print(
                f"{method}@{ratio}: accuracy {m['accuracy']:.3f} (chance {m['chance']:.3f}), "
                f"wall {result['timing']['wall_s']:.0f} s",
                flush=True,
            )
    write_report(Path(args.out), args, rows, warm_s)


def write_report(path: Path, args: argparse.Namespace, rows: list, warm_s: float) -> None:
    hw = hardware_info("cpu")
    types = sorted(rows[0][2]["metrics"]["accuracy_by_type"])
    lines = [
        f"## {datetime.now(UTC).isoformat(timespec='seconds')} — {hw.get('device_name')}, "
        f"{hw.get('threads')} threads, torch {hw.get('torch')}",
        "",
        "`python benchmarks/learnability.py "
        + (f"--steps {args.steps} " if args.steps else "")
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
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fh.write("\n".join(lines) + "\n")
    print(f"appended to {path}")


if __name__ == "__main__":
    main()
