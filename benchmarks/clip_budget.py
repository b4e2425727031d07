"""What budgets per clip cost and save: a batch of mixed-length clips against the same batch with
every clip full, for every reducer, timed side by side (ABBA) in one process.

Each clip keeps kept_tokens of its own real frames, in static kept_tokens(F) slots with masked
filler, and the reducer runs once per clip length in the batch (`core/models/clip_slots.py`). The
mixed batch therefore pays for more reducer calls (ToMe: one ViT pass per length) and saves the
work on tokens it no longer keeps (the packed ViT blocks and the connector of pre-/in-ViT stages);
the LLM runs on the same shapes. The table gives, per method, the visual tokens the LLM sees as
valid (mixed vs the padded budget, which would hand every clip kept_tokens(F)), and the forward
(prefill) time of the mixed batch over the full one.

    python benchmarks/clip_budget.py [--repeats 7] [--out benchmarks/results/clip_budget.md]
    python benchmarks/clip_budget.py --smoke --out /tmp/clip_budget.md   # 3 methods, 1 repeat
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks._report import add_report_options, smoke_out, write_report  # noqa: E402
from core import budget  # noqa: E402
from core.config import ExperimentConfig  # noqa: E402
from core.models.vlm import VideoVLM  # noqa: E402
from core.pruning import Stage  # noqa: E402
from core.registry import REDUCERS  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "clip_budget.md"
FRAMES = 8
MIXED = [8, 6, 4, 2]  # real frames per clip of the mixed batch
VOCAB = 64
SMOKE_METHODS = ["random", "tome", "fastv"]


def config(method: str, frames: int, ratio: float) -> ExperimentConfig:
    """The tiny preset (ViT 64×6, 8 frames of 64×64, 16 tokens per frame) with a 4-layer LM (the
    in-LLM methods need layers to drop between), as in grid=reducer_zoo."""
    return ExperimentConfig.from_dict(
        {
            "data": {"max_frames": frames, "ground_truth": method == "oracle"},
            "lm": {"n_layers": 4},
            "pruning": {"method": method, "ratio": ratio},
        }
    )


def batch(cfg: ExperimentConfig, real: list[int], seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    b, f, s, t = len(real), cfg.data.max_frames, cfg.data.frame_size, cfg.data.max_text_len
    mask = torch.zeros(b, f, dtype=torch.bool)
    for i, r in enumerate(real):
        mask[i, :r] = True
    objects = torch.zeros(b, f, s, s, dtype=torch.bool)
    objects[:, :, : s // 4, : s // 4] = True
    ids = torch.randint(4, VOCAB, (b, t), generator=gen)
    return {
        "pixel_values": torch.randn(b, f, 3, s, s, generator=gen) * mask[:, :, None, None, None],
        "frame_mask": mask,
        "object_mask": objects,
        "input_ids": ids,
        "text_mask": torch.ones(b, t, dtype=torch.bool),
        "sample_key": torch.arange(b),
    }


def valid_tokens(model: VideoVLM, data: dict) -> list[int]:
    """Valid visual tokens per clip at the last LLM layer."""
    with torch.no_grad():
        out = model(data)
    kept = out.visual.diagnostics.get("llm_kept_valid")
    return (out.visual.valid if kept is None else kept).sum(1).tolist()


def timed(model: VideoVLM, data: dict) -> float:
    with torch.no_grad():
        t0 = time.perf_counter()
        model(data)
        return time.perf_counter() - t0


def measure(method: str, ratio: float, repeats: int) -> dict:
    torch.manual_seed(0)
    cfg = config(method, FRAMES, ratio)
    model = VideoVLM(cfg, VOCAB).eval()
    full, mixed = batch(cfg, [FRAMES] * len(MIXED)), batch(cfg, MIXED)
    per_frame = cfg.tokens_per_frame
    own = budget.clip_kept_tokens(MIXED, FRAMES, per_frame, ratio, cfg.pruning.prune_from_frame)
    counts = valid_tokens(model, mixed)
    if counts != own:
        raise RuntimeError(f"{method}: valid tokens {counts}, the clips' own budgets say {own}")
    timed(model, full), timed(model, mixed)  # warm-up
    a, b = [], []
    for i in range(repeats):  # ABBA
        order = (full, mixed) if i % 2 == 0 else (mixed, full)
        for data in order:
            (a if data is full else b).append(timed(model, data))
    padded = budget.kept_tokens(FRAMES, per_frame, ratio, cfg.pruning.prune_from_frame) * len(MIXED)
    return {
        "method": method,
        "stage": REDUCERS.get(method).stage.value,
        "slots": cfg.kept_tokens(),
        "own": sum(counts),
        "padded": padded,
        "full_ms": 1e3 * statistics.median(a),
        "mixed_ms": 1e3 * statistics.median(b),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--ratio", type=float, default=0.5)
    add_report_options(parser, RESULTS, "three methods, one repeat")
    args = parser.parse_args()
    methods = [m for m in REDUCERS.names() if not REDUCERS.get(m).is_reference]
    if args.smoke:
        methods, args.repeats = SMOKE_METHODS, 1
        args.out = smoke_out(args.out, RESULTS, "clip_budget.md")
    rows = [measure(m, args.ratio, args.repeats) for m in methods]
    lines = [
        "| method | stage | slots per clip (LLM input) | valid tokens, own budgets | valid tokens, padded budget "
        "| full batch (ms) | mixed batch (ms) | mixed / full |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['stage']} | {r['slots']} | {r['own']} | {r['padded']} | "
            f"{r['full_ms']:.1f} | {r['mixed_ms']:.1f} | {r['mixed_ms'] / r['full_ms']:.2f} |"
        )
    smoke = " (SMOKE: one repeat, three methods; not a result)" if args.smoke else ""
    text = f"""# Budgets per clip: a mixed-length batch against the same batch full{smoke}

Batch of {len(MIXED)} clips padded to {FRAMES} frames, real frames {MIXED} (mixed) or all
{FRAMES} (full); ratio {args.ratio}; the tiny preset with a 4-layer LM; eval forward (the prefill:
vision tower, reducer, LLM over the prompt), median of {args.repeats} ABBA-interleaved calls each.
*valid tokens*: what the LLM sees of the four clips after the reducer (in-LLM methods: after the
last drop), with each clip's own budget, against the {len(MIXED)} × slots the padded budget would
have kept. Stage {Stage.IN_LLM.value} methods prune inside the LLM, whose shapes are the same for
both batches; every other stage's mixed batch calls its reducer once per clip length.

{chr(10).join(lines)}

Machine: {platform.platform()}; {os.cpu_count()} logical cores; torch {torch.__version__},
{torch.get_num_threads()} threads.

Reproduce: `python benchmarks/clip_budget.py`
"""
    write_report(args.out, text)


if __name__ == "__main__":
    main()
