"""Builds a realistic results tree (docs/results_format.md) with known numbers, written with the
real writers of core.results (`write_plan`, `write_config`, `CellStatus`, `write_result`).

Grid `prune_sweep`: archs joint_decoder, mot × methods none, random, easy, scorer × ratios 0.5, 0.7
× layers 1, 2 × seeds 0, 1, 2 (method none: one cell per arch × seed, ratio 0, layer 1), with one
failed, one new (planned, no folder), one running, one pending and one corrupt (incomplete) cell,
one folder that is not in the plan, and keep_example.npz for scorer/easy/random. Grid `arch_sweep`
(the mixed second grid): all four archs × none, scorer at ratio 0.5, layer 1, seeds 0, 1, where one
seed ran with other train.steps, one result.json claims the wrong grid, and both
cross_attention/scorer seeds failed.

Every number follows the closed-form functions below, so tests can check against hand computation.
Each result carries the `display` block a real cell writes, from one function (`display`).
"""

from __future__ import annotations

import atexit
import hashlib
import json
import math
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ablations.cells import cell_name as launcher_cell_name
from core.extensions import describe
from core.io import append_jsonl
from core.results import (
    METRICS_FILE,
    RESULT_FILE,
    CellStatus,
    cell_block,
    plan_entry,
    write_config,
    write_plan,
    write_result,
)

ARCH_BASE = {"joint_decoder": 0.80, "mot": 0.76, "cross_attention": 0.74, "moma": 0.78}
STEP_BASE = {"joint_decoder": 0.20, "mot": 0.25, "cross_attention": 0.16, "moma": 0.22}
METHOD_DROP = {
    "none": 0.0,
    "random": 0.30,
    "easy": 0.20,
    "heuristic": 0.15,
    "scorer": 0.10,
    "oracle": 0.02,
}
SEED_OFFSET = {0: -0.01, 1: 0.0, 2: 0.01}
QTYPE_OFFSET = {
    "color": 0.05,
    "shape": 0.03,
    "direction": -0.02,
    "count": -0.04,
    "which-first": 0.0,
    "change": 0.01,
    "needle": -0.03,
}
FRAMES, PER_FRAME, SIDE = 8, 16, 4  # 8 frames × 4×4 connector windows
VIT_DEPTH = 4
HARDWARE = {
    "device": "cpu",
    "device_name": "fixture-cpu",
    "threads": 2,
    "torch": "2.13.0",
    "hostname": "fixture-host",
}

PRUNE = dict(
    archs=("joint_decoder", "mot"),
    methods=("none", "random", "easy", "scorer"),
    ratios=(0.5, 0.7),
    layers=(1, 2),
    seeds=(0, 1, 2),
)
ARCH = dict(
    archs=("joint_decoder", "cross_attention", "mot", "moma"),
    methods=("none", "scorer"),
    ratios=(0.5,),
    layers=(1,),
    seeds=(0, 1),
)


# What each method and arch declares about itself (label, short name, order, flags).
def display(axes: dict) -> dict:
    """The result's `display` block for a cell's method and arch, exactly as the cell writes it."""
    return describe(axes["method"], axes["arch"])


# ---- the closed-form numbers -------------------------------------------------------------------


def accuracy(arch: str, method: str, ratio: float, layer: int, seed: int) -> float:
    return ARCH_BASE[arch] - METHOD_DROP[method] * ratio - 0.01 * (layer - 1) + SEED_OFFSET[seed]


def kept_tokens(ratio: float) -> int:
    return FRAMES * PER_FRAME - math.floor(FRAMES * PER_FRAME * ratio + 1e-9)


def step_seconds(arch: str, ratio: float, seed: int) -> float:
    return STEP_BASE[arch] * (1 - 0.5 * ratio) * (1 + 0.1 * seed)


def gflops(ratio: float, layer: int) -> dict[str, float]:
    kept = kept_tokens(ratio)
    full = FRAMES * PER_FRAME
    early = layer + 1 if ratio > 0 else VIT_DEPTH
    vit = 2.0 * early / VIT_DEPTH + 2.0 * (VIT_DEPTH - early) / VIT_DEPTH * kept / full
    connector, llm = 0.05, 0.5 + 0.03 * kept
    reducer = 0.1 if ratio > 0 else 0.0  # the reducer's own scoring, inside the ViT
    return {
        "vit_gflops": vit,
        "reducer_gflops": reducer,
        "connector_gflops": connector,
        "llm_gflops": llm,
        "total_gflops": vit + reducer + connector + llm,
    }


def memory_mb(ratio: float) -> float:
    return 400.0 + 2.0 * kept_tokens(ratio)


# ---- the tree ---------------------------------------------------------------------------------


@dataclass
class FixtureTree:
    root: Path
    grids: tuple[str, ...] = ("prune_sweep", "arch_sweep")
    failed: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)
    keep_methods: tuple[str, ...] = ("scorer", "easy", "random")


def cell_name(arch: str, method: str, ratio: float, layer: int, seed: int) -> str:
    """The launcher's own cell name (ablations.cells.cell_name)."""
    axes = {"arch": arch, "method": method, "ratio": ratio, "layer": layer, "seed": seed}
    return launcher_cell_name(axes)


def cell_id(grid: str, name: str) -> str:
    """A stable 10-hex id per (grid, name), like the launcher's config hash."""
    return hashlib.sha256(f"{grid}:{name}".encode()).hexdigest()[:10]


def expand(spec: dict) -> list[dict]:
    """Axis dicts of a grid: method none collapses to ratio 0 and the first layer."""
    cells = []
    for arch in spec["archs"]:
        for method in spec["methods"]:
            ratios = (0.0,) if method == "none" else spec["ratios"]
            layers = spec["layers"][:1] if method == "none" else spec["layers"]
            for ratio in ratios:
                for layer in layers:
                    for seed in spec["seeds"]:
                        cells.append(
                            dict(arch=arch, method=method, ratio=ratio, layer=layer, seed=seed)
                        )
    return cells


def build_grid(root: Path, grid: str, spec: dict) -> list[dict]:
    """A plain grid where every cell is done (e.g. a paper-scale sweep); returns its axes."""
    cells = expand(spec)
    _write_plan(Path(root) / grid, grid, spec, cells)
    for axes in cells:
        name = cell_name(**axes)
        _write_cell(Path(root) / grid / cell_id(grid, name), grid, name, axes, "done")
    return cells


_BUILT: dict[str, FixtureTree] = {}


def build_results_tree(root: Path) -> FixtureTree:
    """Both grids under `root` (a copy of a tree built once per process: the real writers fsync
    every file, which takes seconds) and what was made."""
    if "tree" not in _BUILT:
        cache = Path(tempfile.mkdtemp(prefix="results-fixture-"))
        atexit.register(shutil.rmtree, cache, ignore_errors=True)
        built = FixtureTree(root=cache)
        _build_prune_sweep(cache, built)
        _build_arch_sweep(cache)
        _BUILT["tree"] = built
    built = _BUILT["tree"]
    shutil.copytree(built.root, root, dirs_exist_ok=True)
    return FixtureTree(root=Path(root), failed=list(built.failed), new=list(built.new))


def _build_prune_sweep(root: Path, tree: FixtureTree) -> None:
    grid = "prune_sweep"
    cells = expand(PRUNE)
    _write_plan(root / grid, grid, PRUNE, cells)
    special = {
        cell_name("joint_decoder", "scorer", 0.7, 2, 2): "failed",
        cell_name("mot", "random", 0.7, 1, 1): "new",
        cell_name("mot", "easy", 0.5, 2, 0): "running",
        cell_name("mot", "easy", 0.5, 2, 1): "pending",
        cell_name("joint_decoder", "random", 0.5, 2, 1): "corrupt",
    }
    for axes in cells:
        name = cell_name(**axes)
        kind = special.get(name, "done")
        cell_dir = root / grid / cell_id(grid, name)
        if kind == "new":
            tree.new.append(name)
            continue
        if kind == "failed":
            tree.failed.append(name)
        _write_cell(cell_dir, grid, name, axes, kind)
        if (
            kind == "done"
            and axes["ratio"] == 0.5
            and axes["layer"] == 1
            and axes["seed"] == 0
            and axes["arch"] == "joint_decoder"
            and axes["method"] in tree.keep_methods
        ):
            write_keep_example(cell_dir / "diagnostics" / "keep_example.npz", axes["method"], 0.5)
    # A folder from an earlier plan: done, but not listed in plan.json.
    stray = dict(arch="joint_decoder", method="heuristic", ratio=0.5, layer=1, seed=0)
    name = cell_name(**stray)
    _write_cell(root / grid / cell_id(grid, name), grid, name, stray, "done")
    (root / grid / "_trash" / "old-cell").mkdir(parents=True)


def _build_arch_sweep(root: Path) -> None:
    grid = "arch_sweep"
    cells = expand(ARCH)
    _write_plan(root / grid, grid, ARCH, cells)
    for axes in cells:
        name = cell_name(**axes)
        steps = (
            200 if (axes["arch"], axes["method"], axes["seed"]) == ("moma", "scorer", 1) else 100
        )
        claimed = "prune_sweep" if name == cell_name("mot", "none", 0.0, 1, 0) else grid
        kind = (
            "failed" if (axes["arch"], axes["method"]) == ("cross_attention", "scorer") else "done"
        )
        _write_cell(
            root / grid / cell_id(grid, name),
            grid,
            name,
            axes,
            kind,
            steps=steps,
            claimed_grid=claimed,
        )


def _write_plan(grid_dir: Path, grid: str, spec: dict, cells: list[dict]) -> None:
    axes = {axis: list(spec[f"{axis}s"]) for axis in ("arch", "method", "ratio", "layer", "seed")}
    entries = [plan_entry(cell_id(grid, cell_name(**a)), cell_name(**a), a) for a in cells]
    write_plan(grid_dir, grid, axes, entries)


def flat_config(axes: dict, steps: int) -> dict:
    return {
        "data.max_frames": FRAMES,
        "data.frame_size": 64,
        "data.data_root": "data/synthetic",
        "fusion.arch": axes["arch"],
        "pruning.method": axes["method"],
        "pruning.ratio": axes["ratio"],
        "pruning.prune_at": axes["layer"],
        "pruning.seed": axes["seed"],
        "train.seed": axes["seed"],
        "train.steps": steps,
        "train.device": "cpu",
        "logging.wandb": "offline",
    }


def result_dict(grid: str, name: str, axes: dict, steps: int = 100) -> dict:
    arch, method, ratio, layer, seed = (
        axes[k] for k in ("arch", "method", "ratio", "layer", "seed")
    )
    acc = accuracy(arch, method, ratio, layer, seed)
    kept = kept_tokens(ratio)
    flops = gflops(ratio, layer)
    measured = step_seconds(arch, 0.0, seed) / step_seconds(arch, ratio, seed)
    analytic = gflops(0.0, layer)["total_gflops"] / flops["total_gflops"]
    return {
        "cell_id": cell_id(grid, name),
        "grid": grid,
        "name": name,
        "axes": axes,
        "config": flat_config(axes, steps),
        "metrics": {
            "accuracy": acc,
            "accuracy_by_type": {t: acc + off for t, off in QTYPE_OFFSET.items()},
            "count_by_type": dict.fromkeys(QTYPE_OFFSET, 10),
            "chance": 0.3,
            "caption_loss": None,
            "caption_perplexity": None,
            "train_loss": 1.5 - acc,
            "eval_samples": 70,
            "bad_samples": 0,
        },
        "efficiency": {
            "vision_tokens_llm": kept,
            "vision_tokens_full": FRAMES * PER_FRAME,
            "kept_fraction": kept / (FRAMES * PER_FRAME),
            **flops,
            "train_step_s": step_seconds(arch, ratio, seed),
            # measured side by side against the unpruned model in the same process
            "speedup_train_measured": measured,
            "speedup_train_measured_q1": measured - 0.02,
            "speedup_train_measured_q3": measured + 0.02,
            "speedup_flops_analytic": analytic,
            "measured_over_analytic": measured / analytic,
            "eval_clips_per_s": 50.0 / (1 - ratio / 2),
            "prefill_latency_s": 0.01 * kept / 128,
            "peak_memory_mb": memory_mb(ratio),
        },
        "hardware": dict(HARDWARE),
        "timing": {"wall_s": 60.0, "train_s": 50.0, "eval_s": 10.0},
        "git_commit": "abc1234",
        "finished": "2025-01-01T01:00:00+00:00",
        "display": display(axes),
    }


def _write_cell(
    cell_dir: Path,
    grid: str,
    name: str,
    axes: dict,
    kind: str,
    steps: int = 100,
    claimed_grid: str | None = None,
) -> None:
    """One cell as the launcher and the runner leave it: `kind` is done, failed, running,
    pending or corrupt (done, then its result.json torn)."""
    sections = {
        "data": {"max_frames": FRAMES, "frame_size": 64},
        "fusion": {"arch": axes["arch"]},
        "pruning": {"method": axes["method"], "ratio": axes["ratio"], "prune_at": axes["layer"]},
        "train": {"seed": axes["seed"], "steps": steps},
    }
    overrides = {
        "fusion.arch": axes["arch"],
        "pruning.method": axes["method"],
        "pruning.ratio": axes["ratio"],
        "pruning.prune_at": axes["layer"],
        "train.seed": axes["seed"],
        "train.steps": steps,
    }
    block = cell_block(cell_dir.name, grid, name, axes, overrides)
    write_config(cell_dir, {**sections, "cell": block})
    if kind == "pending":
        CellStatus(cell_dir).pending()
        return
    status = CellStatus(cell_dir)
    status.start(host="fixture-host", commit="abc1234")
    acc = accuracy(axes["arch"], axes["method"], axes["ratio"], axes["layer"], axes["seed"])
    last = 40 if kind in ("failed", "running") else steps
    rows = [
        {"step": s, "phase": "train", "time": 0.2 * s, "train/loss": 2.0 - acc * s / steps}
        for s in range(0, last + 1, max(steps // 4, 1))
    ]
    lines = "".join(json.dumps({**row, "train/lr": 1e-3}) + "\n" for row in rows)
    (cell_dir / METRICS_FILE).write_text(lines)  # the logger's lines, in one write
    if kind != "done":
        status.update(last)
    if kind == "failed":  # a second attempt that failed too
        status = CellStatus(cell_dir)
        status.start(host="fixture-host", commit="abc1234")
        status.fail(RuntimeError(f"loss is NaN at step {last}"), step=last)
    if kind not in ("done", "corrupt"):
        return
    if kind == "done":
        row = {"step": steps, "phase": "eval", "time": 0.2 * steps, "val/accuracy": acc}
        append_jsonl(cell_dir / METRICS_FILE, row)
    result = result_dict(grid, name, axes, steps)
    result["grid"] = claimed_grid or grid
    write_result(cell_dir, result)
    status.finish(steps)
    if kind == "corrupt":  # e.g. a copy that lost the tail of the file
        path = cell_dir / RESULT_FILE
        path.write_text(path.read_text()[:40])


# ---- keep example -------------------------------------------------------------------------------


def keep_mask(method: str, ratio: float, seed: int = 0) -> np.ndarray:
    """(F, 4, 4) keep mask with exactly kept_tokens(ratio) True; scorer/easy keep frame 0 whole."""
    rng = np.random.default_rng(seed + sum(map(ord, method)))
    kept = kept_tokens(ratio)
    scores = rng.random((FRAMES, SIDE, SIDE))
    if method in ("scorer", "easy"):
        scores[0] = 10.0  # first frame kept whole
    if method == "scorer":
        for f in range(FRAMES):  # windows on the object's path score high
            scores[f, 1, min(f // 2, SIDE - 1)] += 5.0
    order = np.argsort(-scores.ravel(), kind="stable")
    keep = np.zeros(FRAMES * SIDE * SIDE, dtype=bool)
    keep[order[:kept]] = True
    return keep.reshape(FRAMES, SIDE, SIDE)


def clip_frames(size: int = 64) -> np.ndarray:
    """A gradient background with a red square moving right."""
    yy, xx = np.mgrid[0:size, 0:size]
    frames = np.zeros((FRAMES, size, size, 3), dtype=np.uint8)
    for f in range(FRAMES):
        frames[f, ..., 0] = 60 + xx // 2
        frames[f, ..., 1] = 80 + yy // 2
        frames[f, ..., 2] = 120
        x0 = 4 + f * 6
        frames[f, 20:28, x0 : x0 + 8] = (230, 30, 30)
    return frames


def write_keep_example(path: Path, method: str, ratio: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        path,
        frames=clip_frames(),
        keep=keep_mask(method, ratio),
        window=np.int64(2),
        clip_id=np.array("00001234"),
        question=np.array("which way does the red square move?"),
        answer=np.array("right"),
        method=np.array(method),
        ratio=np.array(ratio),
    )
