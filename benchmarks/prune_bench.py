"""Forward+backward time and analytic FLOPs vs pruning ratio, side by side in one run.

For each config (the tiny CPU preset and a larger one: prune_at=3 of 12 blocks, 16+ frames) and each
ratio in {0, 0.3, 0.5, 0.7}, builds the full VLM (ViT → in-ViT reducer → connector → joint decoder),
times forward+backward on a fixed random batch with `core.efficiency.measure_model` (the function the
cell runner uses), and reports both speed-ups as ratios to ratio 0. Runs unchanged on CUDA.

    python benchmarks/prune_bench.py [--device cuda] [--method scorer] [--out benchmarks/results/prune.md]
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path

import torch

from core.config import ExperimentConfig
from core.efficiency import analytic_flops, hardware_info, measure_model
from core.models.vlm import VideoVLM

RATIOS = (0.0, 0.3, 0.5, 0.7)
VOCAB = 128

PRESETS = {
    "tiny (CPU default)": {"pruning": {"prune_at": 1}},
    "large (12 blocks, prune_at=3, 16 frames)": {
        "data": {"frame_size": 224, "max_frames": 16, "max_text_len": 32},
        "vision": {"patch_size": 14, "dim": 256, "depth": 12, "heads": 4},
        "lm": {"dim": 256, "n_layers": 4, "n_heads": 4, "n_kv_heads": 2, "max_seq_len": 1100},
        "pruning": {"prune_at": 3},
    },
    "gpu-large (12 blocks, prune_at=3, 64 frames)": {
        "data": {"frame_size": 224, "max_frames": 64, "max_text_len": 64},
        "vision": {"patch_size": 14, "dim": 768, "depth": 12, "heads": 12},
        "lm": {"dim": 1024, "n_layers": 8, "n_heads": 16, "n_kv_heads": 4, "max_seq_len": 4200},
        "pruning": {"prune_at": 3},
    },
}


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--method", default="scorer")
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--presets", nargs="*", default=None)
    parser.add_argument("--batch", type=int, default=0, help="0 → 8 on the tiny preset, else 1")
    parser.add_argument("--out", default="benchmarks/results/prune.md")
    args = parser.parse_args()
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
