"""Forward+backward time and analytic FLOPs vs pruning ratio, side by side in one run.

For each config (the tiny CPU preset and a larger one: prune_at=3 of 12 blocks, 16+ frames) and each
ratio in {0, 0.3, 0.5, 0.7}, builds the full VLM (ViT → in-ViT reducer → connector → joint decoder),
times forward+backward on a fixed random batch with `core.efficiency.measure_model` (the function the
cell runner uses), and reports both speed-ups as ratios to ratio 0. Runs unchanged on CUDA.
Each preset pins its whole geometry, so a change of a core default cannot change what it measures.

`--smoke` times nothing: it validates every preset at every ratio, builds each model on the `meta`
device, runs one forward+backward of the tiny preset and prints the analytic table.

    python benchmarks/prune_bench.py [--device cuda] [--method scorer] [--out benchmarks/results/prune.md]
    python benchmarks/prune_bench.py --smoke
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from core.config import ExperimentConfig  # noqa: E402
from core.efficiency import analytic_flops, hardware_info, measure_model  # noqa: E402
from core.models.vlm import VideoVLM  # noqa: E402

RATIOS = (0.0, 0.3, 0.5, 0.7)
VOCAB = 128


def geometry(
    *,
    frames: int,
    frame_size: int,
    patch: int,
    vit: tuple[int, int, int],
    window: int,
    lm: tuple[int, int, int, int],
    text: int,
    context: int,
    prune_at: int,
) -> dict:
    """A preset's whole geometry: `vit` = (width, depth, heads), `lm` = (width, layers, heads, kv
    heads), `context` = lm.max_seq_len; a joint decoder behind an avgpool connector, MLP ratio 4."""
    (vit_dim, depth, heads), (lm_dim, layers, lm_heads, kv_heads) = vit, lm
    return {
        "data": {"frame_size": frame_size, "max_frames": frames, "min_frames": 4,
                 "max_text_len": text},
        "vision": {"patch_size": patch, "dim": vit_dim, "depth": depth, "heads": heads,
                   "mlp_ratio": 4.0},
        "connector": {"type": "avgpool", "window": window},
        "lm": {"dim": lm_dim, "n_layers": layers, "n_heads": lm_heads, "n_kv_heads": kv_heads,
               "max_seq_len": context},
        "fusion": {"arch": "joint_decoder"},
        "pruning": {"prune_at": prune_at},
    }  # fmt: skip


PRESETS = {
    # the CPU default when benchmarks/results/prune.md was recorded
    "tiny (CPU default)": geometry(
        frames=8, frame_size=64, patch=8, vit=(96, 4, 4), window=2, lm=(128, 3, 4, 2),
        text=24, context=256, prune_at=1,
    ),
    "large (12 blocks, prune_at=3, 16 frames)": geometry(
        frames=16, frame_size=224, patch=14, vit=(256, 12, 4), window=2, lm=(256, 4, 4, 2),
        text=32, context=1100, prune_at=3,
    ),
    "gpu-large (12 blocks, prune_at=3, 64 frames)": geometry(
        frames=64, frame_size=224, patch=14, vit=(768, 12, 12), window=2, lm=(1024, 8, 16, 4),
        text=64, context=4200, prune_at=3,
    ),
}  # fmt: skip


def make_config(preset: dict, method: str, ratio: float) -> ExperimentConfig:
    sections = json.loads(json.dumps(preset))
    sections.setdefault("pruning", {}).update(
        {"method": method if ratio > 0 else "none", "ratio": ratio}
    )
    return ExperimentConfig.from_dict(sections)


def make_batch(cfg: ExperimentConfig, batch: int, device: torch.device) -> dict:
    gen = torch.Generator().manual_seed(0)
    f, s, t = cfg.data.max_frames, cfg.data.frame_size, cfg.data.max_text_len
    ids = torch.randint(4, VOCAB, (batch, t), generator=gen)
    labels = torch.full((batch, t), -100)
    labels[:, t // 2 : -1] = ids[:, t // 2 + 1 :]
    out = {
        "pixel_values": torch.randn(batch, f, 3, s, s, generator=gen),
        "frame_mask": torch.ones(batch, f, dtype=torch.bool),
        "input_ids": ids,
        "labels": labels,
        "text_mask": torch.ones(batch, t, dtype=torch.bool),
        "sample_key": torch.arange(batch),
    }
    return {k: v.to(device) for k, v in out.items()}


def bench(preset: dict, method: str, batch_size: int, device: torch.device, iters: int) -> list:
    rows = []
    for ratio in RATIOS:
        cfg = make_config(preset, method, ratio)
        torch.manual_seed(0)
        model = VideoVLM(cfg, VOCAB).to(device)
        model.train()
        batch = make_batch(cfg, batch_size, device)
        amp = device.type == "cuda"

        def forward(model=model, batch=batch, amp=amp):
            with torch.no_grad(), torch.autocast(device.type, torch.bfloat16, enabled=amp):
                model(batch)

        def train_step(model=model, batch=batch, amp=amp):
            model.zero_grad(set_to_none=True)
            with torch.autocast(device.type, torch.bfloat16, enabled=amp):
                loss = model(batch).loss
            loss.backward()

        m = measure_model(forward, train_step, warmup=1, iters=iters, device=device)
        flops = analytic_flops(cfg, vocab_size=VOCAB)
        rows.append(
            {
                "ratio": ratio,
                "kept": cfg.kept_tokens(),
                "gflops": flops.total,
                "vit_gflops": flops.vit,
                "llm_gflops": flops.llm,
                **m,
            }
        )
    base = rows[0]
    for r in rows:
        r["measured_speedup"] = base["forward_backward_s"] / r["forward_backward_s"]
        r["analytic_speedup"] = base["gflops"] / r["gflops"]
        r["efficiency"] = (
            (r["measured_speedup"] - 1) / (r["analytic_speedup"] - 1)
            if r["analytic_speedup"] > 1
            else float("nan")
        )
        r["fraction_of_analytic"] = r["measured_speedup"] / r["analytic_speedup"]
    return rows


def smoke(method: str) -> str:
    """Untimed: every preset × ratio validates and builds (meta device); the tiny one also runs."""
    lines = [
        "| preset | ratio | kept tokens | GFLOPs/clip | analytic speed-up |",
        "|---|---|---|---|---|",
    ]
    for name, preset in PRESETS.items():
        base = None
        for ratio in RATIOS:
            cfg = make_config(preset, method, ratio)
            with torch.device("meta"):
                VideoVLM(cfg, VOCAB)
            if name.startswith("tiny"):
                model = VideoVLM(cfg, VOCAB).train()
                model(make_batch(cfg, 2, torch.device("cpu"))).loss.backward()
            gflops = analytic_flops(cfg, vocab_size=VOCAB).total
            base = base or gflops
            lines.append(
                f"| {name} | {ratio:.1f} | {cfg.kept_tokens()} | {gflops:.2f} | {base / gflops:.2f}× |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--method", default="scorer")
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--presets", nargs="*", default=None)
    parser.add_argument("--batch", type=int, default=0, help="0 → 8 on the tiny preset, else 1")
    parser.add_argument("--out", default=None, help="default: benchmarks/results/prune.md")
    parser.add_argument("--smoke", action="store_true", help="validate and build only, no timing")
    args = parser.parse_args(argv)
    if args.smoke:
        text = smoke(args.method) + "\n"
        if args.out:
            Path(args.out).write_text(text)
        print(text)
        return
    args.out = args.out or "benchmarks/results/prune.md"
    device = torch.device(args.device)
    names = args.presets or [n for n in PRESETS if (device.type == "cuda") or "gpu" not in n]
    lines = [
        f"## {args.method} on {hardware_info(device)['device_name']} ({device.type}), "
        f"{datetime.now(UTC).date()}",
        "",
        f"hardware: `{json.dumps(hardware_info(device))}`",
        "",
    ]
    for name in names:
        batch = args.batch or (8 if name.startswith("tiny") else 1)
        rows = bench(PRESETS[name], args.method, batch, device, args.iters)
        lines += [
            f"### {name}, batch {batch}",
            "",
            "| ratio | kept tokens | GFLOPs/clip | fwd s | fwd+bwd s | analytic speed-up "
            "| measured speed-up | measured / analytic | peak MB |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            lines.append(
                f"| {r['ratio']:.1f} | {r['kept']} | {r['gflops']:.2f} | {r['forward_s']:.4f} | "
                f"{r['forward_backward_s']:.4f} | {r['analytic_speedup']:.2f}× | "
                f"{r['measured_speedup']:.2f}× | {r['fraction_of_analytic']:.2f} | "
                f"{r['peak_memory_mb']:.0f} |"
            )
        lines.append("")
        print("\n".join(lines[-len(rows) - 4 :]), flush=True)
    text = "\n".join(lines) + "\n"
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a") as f:
        f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
