"""Small real cell functions for launcher tests (the `cell_fn` setting points here).

`count_cell(cell_dir)` follows the cell contract without a model: it reads config.yaml, counts
`train.steps` steps with a deterministic running value, checkpoints after every step (so a
requeued or re-launched attempt resumes), writes status.json / metrics.jsonl (one train row per
step, one eval row per evaluation) and finally result.json with the real writers (core.results);
`attempts.jsonl` gets one line per attempt (its start step and pid). Its final numbers depend
only on the config, never on where it was interrupted. Like the real cell, a cell with `train.init_cell` refuses to
start before its base cell is done (`base_value` in its result then records the base's value).
Environment knobs (they reach submitit/SLURM job processes too):
  LAUNCHER_TEST_FAIL    comma-separated cell names that raise after their first step
  LAUNCHER_TEST_STEP_S  seconds to sleep per step (makes time-outs and requeues observable)
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

from core.io import append_jsonl, read_json, read_yaml, write_json_atomic
from core.lease import Lease
from core.results import CellStatus, git_commit, now_iso, read_result, record_jobs, write_result

MOD = 1_000_003


def step_value(value: int, step: int, seed: int) -> int:
    return (value * 31 + step * 7 + seed + 1) % MOD


def expected_value(steps: int, seed: int) -> int:
    """The final value of an uninterrupted run."""
    value = 0
    for step in range(steps):
        value = step_value(value, step, seed)
    return value


def count_cell(cell_dir: str) -> dict[str, Any]:
    root = Path(cell_dir)
    cfg = read_yaml(root / "config.yaml")
    cell = cfg["cell"]
    steps, seed = int(cfg["train"]["steps"]), int(cfg["train"]["seed"])
    status = CellStatus(root)
    status.start()
    base_id = cfg["train"].get("init_cell") or ""
    base = read_result(root.parent / base_id) if base_id else None
    if base_id and base is None:
        error = FileNotFoundError(f"train.init_cell={base_id}: its base cell has not finished")
        status.fail(error, 0)
        raise error
    ckpt_path = root / "checkpoints" / "last.json"
    ckpt = read_json(ckpt_path) if ckpt_path.is_file() else {"step": 0, "value": 0}
    append_jsonl(root / "attempts.jsonl", {"start_step": ckpt["step"], "pid": os.getpid()})
    delay = float(os.environ.get("LAUNCHER_TEST_STEP_S", "0") or 0)
    failing = {n for n in os.environ.get("LAUNCHER_TEST_FAIL", "").split(",") if n}
    t0 = time.time()
    step, value = int(ckpt["step"]), int(ckpt["value"])
    try:
        while step < steps:
            value = step_value(value, step, seed)
            step += 1
            if delay:
                time.sleep(delay)
            write_json_atomic(ckpt_path, {"step": step, "value": value})
            append_jsonl(
                root / "metrics.jsonl",
                {
                    "step": step,
                    "phase": "train",
                    "time": time.time() - t0,
                    "train/loss": value / MOD,
                },
            )
            status.update(step)
            if cell["name"] in failing:
                raise RuntimeError(f"injected failure in {cell['name']} at step {step}")
    except Exception as exc:
        status.fail(exc, step)
        raise
    append_jsonl(root / "metrics.jsonl", {"step": step, "phase": "eval", "val/accuracy": value})
    result = {
        "cell_id": cell["cell_id"],
        "grid": cell["grid"],
        "name": cell["name"],
        "axes": cell["axes"],
        "config": {f"{s}.{k}": v for s, sec in cfg.items() if s != "cell" for k, v in sec.items()},
        "metrics": {
            "accuracy": value / MOD,
            "accuracy_by_type": {},
            "count_by_type": {},
            "chance": 0.25,
            "caption_loss": None,
            "caption_perplexity": None,
            "train_loss": value / MOD,
            "eval_samples": 0,
            "bad_samples": 0,
        },
        "efficiency": {},
        "hardware": {
            "device": "cpu",
            "device_name": "test",
            "threads": 1,
            "torch": "",
            "hostname": socket.gethostname(),
        },
        "timing": {"wall_s": time.time() - t0, "train_s": 0.0, "eval_s": 0.0},
        "git_commit": status.git_commit,
        "finished": now_iso(),
        "value": value,
        "steps": step,
        "base_value": base["value"] if base else None,
    }
    write_result(root, result)
    status.finish(step)
    return result


def env_cell(cell_dir: str) -> dict[str, Any]:
    """Record the distributed environment each task sees (`rank_<RANK>.json`); rank 0 finishes."""
    keys = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
    seen = {k: os.environ.get(k) for k in keys}
    write_json_atomic(Path(cell_dir) / f"rank_{seen['RANK']}.json", seen)
    if seen["RANK"] in (None, "0"):
        cell = read_yaml(Path(cell_dir) / "config.yaml")["cell"]
        blocks = ("axes", "config", "metrics", "efficiency", "hardware", "timing")
        result = {
            **{key: cell[key] for key in ("cell_id", "grid", "name")},
            **{block: {} for block in blocks},
            "git_commit": git_commit(),
            "finished": now_iso(),
            "env": seen,
        }
        write_result(cell_dir, result)
    return seen


# ---- process targets of the lock tests (importable without the launcher) ---------------------
def count_under_lease(path: str, counter: str, rounds: int) -> None:
    """Increment a counter file `rounds` times by read-modify-write, each under the lease."""
    for _ in range(rounds):
        lease = Lease(path)
        lease.acquire(poll_s=0.005)
        value = int(Path(counter).read_text())  # loses updates unless the lease is exclusive
        time.sleep(0.002)
        Path(counter).write_text(str(value + 1))
        lease.release()


def record_many(grid_dir: str, who: int) -> None:
    """Merge ten jobs.json entries of its own, one at a time."""
    for i in range(10):
        record_jobs(grid_dir, "inline", {f"c{who}-{i}": f"inline-{who}"})
