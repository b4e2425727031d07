"""Analytic FLOPs vs an independent count at Molmo2-4B shapes (STTS, joint decoder).

Shapes: SigLIP2 so400m as Molmo2 runs it (25 blocks, width 1152, MLP 4304, 16 heads, 378 px at
patch 14 → 27×27 = 729 patches, 3×3 windows → 81 tokens per frame, attentional-pool connector) and
Qwen3-4B (36 layers, width 2560, 32 query heads × 128, 8 KV heads, SwiGLU 9728, vocab 151936);
64 and 128 frames; STTS topk 0.3 / 0.5 at prune_at 3; `--text-len` text tokens.

The independent count is torch's `FlopCounterMode` over the real modules built on the `meta` device
(no memory, no arithmetic): patch embedding, every ViT block on the token layout the budget gives
(the first prune_at+2 blocks on all patches, the last with STTS's key bias; later blocks per frame on
its kept patches, spread evenly as the analytic model assumes; the real split is data-dependent), the
STTS scorer, the connector on the kept windows and the joint decoder on [kept visual | text].

    python benchmarks/flops_table.py [--out benchmarks/results/flops_molmo2.md] [--smoke]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from benchmarks._report import write_report  # noqa: E402
from core.config import ExperimentConfig  # noqa: E402
from core.efficiency.flops import GIGA, analytic_flops  # noqa: E402
from core.layers.windows import WindowGrid  # noqa: E402
from core.models.connectors import build_connector  # noqa: E402
from core.models.fusion import build_fusion  # noqa: E402
from core.models.vision import build_encoder  # noqa: E402
from core.models.visual_tokens import VisualTokens  # noqa: E402
from core.pruning import ReductionInputs, build_reducer  # noqa: E402
from core.registry import REDUCERS  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "flops_molmo2.md"
MOLMO2 = {
    "data": {"frame_size": 378, "min_frames": 1},
    "vision": {"patch_size": 14, "dim": 1152, "depth": 25, "heads": 16, "mlp_ratio": 4304 / 1152},
    "connector": {"type": "attentional_pool", "window": 3, "attentional_pool": {"heads": 16}},
    "lm": {"dim": 2560, "n_layers": 36, "n_heads": 32, "n_kv_heads": 8, "attn_head_dim": 128,
           "ffn_dim": 9728, "vocab_size": 151936, "max_seq_len": 16384},
    "pruning": {"method": "scorer", "prune_at": 3},
}  # fmt: skip
SMOKE = {  # the same structure at toy size (attn_head_dim·n_heads ≠ dim as in Qwen3)
    "data": {"frame_size": 48, "min_frames": 1},
    "vision": {"patch_size": 8, "dim": 32, "depth": 6, "heads": 2},
    "connector": {"type": "attentional_pool", "window": 3, "attentional_pool": {"heads": 2}},
    "lm": {"dim": 32, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "attn_head_dim": 16,
           "vocab_size": 97, "max_seq_len": 512},
    "pruning": {"method": "scorer", "prune_at": 1},
}  # fmt: skip
PARTS = ("vit", "reducer", "connector", "llm", "total")
HEADER = """# Analytic FLOPs at Molmo2-4B shapes vs an independent count (benchmarks/flops_table.py)

`core.efficiency.flops.analytic_flops` against torch's `FlopCounterMode` run on the real modules
built on the `meta` device (`python benchmarks/flops_table.py`; see its docstring for the shapes and
what is counted). "ViT" is the encoder (patch embedding + blocks), "STTS scorer" the reducer's
scoring, "LLM" the joint decoder incl. its LM head on the text positions. Speed-ups are against the
unpruned row of the same frame count. topk = pruning.ratio (fraction of visual tokens removed).

"""


def make_config(shapes: dict, frames: int, ratio: float, text_len: int) -> ExperimentConfig:
    sections = {name: dict(values) for name, values in shapes.items()}
    sections["data"].update(max_frames=frames, max_text_len=text_len)
    sections["pruning"].update(ratio=ratio, method=shapes["pruning"]["method"] if ratio else "none")
    return ExperimentConfig.from_dict(sections)


class Counted:
    """FlopCounterMode totals summed per named part (SDPA forced to the math kernel)."""

    def __init__(self) -> None:
        self.flops: Counter[str] = Counter()

    @contextlib.contextmanager
    def part(self, name: str) -> Iterator[None]:
        with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
            yield
        self.flops[name] += counter.get_total_flops()


def meta_count(cfg: ExperimentConfig) -> dict[str, float]:
    """GFLOPs per part counted on meta-device modules for one clip (batch 1, no padding)."""
    frames, t, size = cfg.data.max_frames, cfg.data.max_text_len, cfg.data.frame_size
    vocab, d, prune_at = cfg.lm.vocab_size, cfg.vision.dim, cfg.pruning.prune_at
    flow = REDUCERS.get(cfg.pruning.method).token_flow(cfg, frames, t, vocab)
    meta = torch.device("meta")
    with meta:
        encoder = build_encoder(cfg.vision, size)
        connector = build_connector(cfg.connector, d, cfg.lm.dim)
        fusion = build_fusion(cfg.fusion, cfg.lm, vocab)
        reducer = build_reducer(cfg.pruning, d, cfg.vision.mlp_dim) if flow.reduced else None
    win = WindowGrid(cfg.grid, cfg.connector.window)
    kept = flow.connector_tokens
    c = Counted()
    with c.part("vit"):
        x = encoder.embed(torch.empty(frames, 3, size, size, device=meta))
    bias = None
    for i, (block, tokens) in enumerate(zip(encoder.blocks, flow.vit_blocks, strict=True)):
        if reducer is not None and i == prune_at + 1:  # scoring after block prune_at
            inputs = ReductionInputs(
                hidden=x[None],
                embeddings=x[None],
                frame_mask=torch.ones(1, frames, dtype=torch.bool, device=meta),
                windows=win,
                n_prune=flow.full_tokens - kept,
                training=False,
            )
            with c.part("reducer"):
                sel = reducer.select(inputs)
            bias = None if sel.key_bias is None else sel.key_bias[0]
        with c.part("vit"):
            if tokens == [flow.patches] * frames:  # every patch (STTS: its key bias after scoring)
                x = block(x, key_bias=bias if i > prune_at else None)
            else:  # after hard removal: each frame alone on its kept patches
                for n, m in Counter(tokens).items():
                    block(torch.empty(m, n, d, device=meta))
    with c.part("connector"):
        grouped = torch.empty(kept, win.slots, d, device=meta)
        feats = connector(grouped, torch.ones(kept, win.slots, dtype=torch.bool, device=meta))
    index = torch.zeros(1, kept, dtype=torch.long)
    visual = VisualTokens(
        features=feats[None],
        valid=torch.ones(1, kept, dtype=torch.bool),  # on the CPU: all valid → the causal path
        frame_index=index,
        window_index=index,
        num_frames=frames,
        tokens_per_frame=win.num_windows,
    )
    with c.part("llm"):
        fusion(visual, torch.zeros(1, t, dtype=torch.long, device=meta), torch.ones(1, t) > 0)
    out = {part: c.flops[part] / GIGA for part in PARTS[:-1]}
    out["total"] = sum(out.values())
    return out


def table_rows(shapes: dict, frames_list: list[int], ratios: list[float], text_len: int) -> list:
    """One row per (frames, ratio): analytic and counted GFLOPs per part and the speed-ups."""
    rows = []
    for frames in frames_list:
        base = None
        for ratio in ratios:
            cfg = make_config(shapes, frames, ratio, text_len)
            fl = analytic_flops(cfg)
            analytic = {part: getattr(fl, part) for part in PARTS}
            counted = meta_count(cfg)
            row = {"frames": frames, "ratio": ratio, "kept": fl.vision_tokens_llm,
                   "analytic": analytic, "counted": counted}  # fmt: skip
            base = base or row
            for kind in ("analytic", "counted"):
                for part in ("vit", "total"):
                    row[f"{kind}_{part}_speedup"] = base[kind][part] / row[kind][part]
            rows.append(row)
    return rows


def deviation(row: dict, part: str) -> float:
    """(analytic − counted) / counted, in %."""
    counted = row["counted"][part]
    return 100.0 * (row["analytic"][part] - counted) / counted if counted else 0.0


def _fmt(gflops: float) -> str:
    return f"{gflops:.1f}" if gflops >= 10 else f"{gflops:.4g}"


def render(rows: list, text_len: int, title: str) -> str:
    lines = [
        f"## {title}, {text_len} text tokens",
        "",
        "GFLOPs per clip, analytic / counted (deviation = (analytic − counted) / counted).",
        "",
        "| frames | topk | kept tokens | ViT | STTS scorer | connector | LLM | total | dev. ViT "
        "| dev. LLM | dev. total | ViT speed-up (an. / counted) | total speed-up (an. / counted) |",
        "|---:|---:|---:|---|---|---|---|---|---:|---:|---:|---|---|",
    ]
    for r in rows:
        cells = [f"{_fmt(r['analytic'][p])} / {_fmt(r['counted'][p])}" for p in PARTS]
        devs = [f"{deviation(r, p):+.2f}%" for p in ("vit", "llm", "total")]
        speed = [
            f"{r[f'analytic_{p}_speedup']:.3f}× / {r[f'counted_{p}_speedup']:.3f}×"
            for p in ("vit", "total")
        ]
        lines.append(
            f"| {r['frames']} | {r['ratio']:g} | {r['kept']} | "
            + " | ".join(cells + devs + speed)
            + " |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--text-len", type=int, default=256)
    parser.add_argument("--smoke", action="store_true", help="toy shapes, 4 and 8 frames")
    args = parser.parse_args(argv)
    if args.smoke:
        rows = table_rows(SMOKE, [4, 8], [0.0, 0.3, 0.5], min(args.text_len, 16))
        text = render(rows, min(args.text_len, 16), "Smoke: toy shapes")
    else:
        rows = table_rows(MOLMO2, [64, 128], [0.0, 0.3, 0.5], args.text_len)
        text = HEADER + render(rows, args.text_len, "SigLIP2 so400m + Qwen3-4B, STTS, prune_at 3")
    write_report(args.out, text)
    worst = max(abs(deviation(r, p)) for r in rows for p in PARTS)
    print(f"largest |deviation|: {worst:.3f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
