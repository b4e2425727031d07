"""(f) Which windows reach the LLM for one clip: per method a row of frames with the DROPPED
connector windows shaded and hatched, plus kept windows per frame over time.

Reads diagnostics/keep_example.npz of done cells (frames uint8 (F,H,W,3), keep bool (F,wh,ww),
window, clip_id, question, answer, method, ratio) and shows the clip/ratio/arch/layer/seed slice
that has the most methods.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.patches import Rectangle

from analysis.data import GridData
from analysis.display import Labels, protocol_label
from core.results import DIAGNOSTICS_DIR
from paper_figures import style
from paper_figures.common import SkipFigure

NAME = "keep_example"
EXAMPLE = Path(DIAGNOSTICS_DIR) / "keep_example.npz"
MAX_FRAMES_SHOWN = 8


@dataclass
class KeepExample:
    method: str
    ratio: float
    clip_id: str
    question: str
    answer: str
    frames: np.ndarray  # (F, H, W, 3) uint8
    keep: np.ndarray  # (F, wh, ww) bool
    window: int
    slice_key: tuple  # (clip_id, ratio, arch, layer, seed, protocol, variant)


def load_example(
    path: Path, arch: str, layer: object, seed: object, protocol: str = "", variant: str = ""
) -> KeepExample:
    """Read and check one keep_example.npz (no pickles); ValueError names the file and the field."""
    with np.load(path, allow_pickle=False) as npz:
        missing = [k for k in ("frames", "keep", "method", "ratio") if k not in npz]
        if missing:
            raise ValueError(f"{path}: missing field(s) {', '.join(missing)}")
        frames, keep = np.asarray(npz["frames"]), np.asarray(npz["keep"]).astype(bool)
        text = {k: str(npz[k]) if k in npz else "" for k in ("clip_id", "question", "answer")}
        method, ratio = str(npz["method"]), float(npz["ratio"])
        window = int(npz["window"]) if "window" in npz else 0
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"{path}: frames has shape {frames.shape}, expected (F, H, W, 3)")
    if keep.ndim != 3 or keep.shape[0] != frames.shape[0]:
        raise ValueError(
            f"{path}: keep has shape {keep.shape}, expected ({frames.shape[0]}, wh, ww)"
        )
    return KeepExample(
        method,
        ratio,
        text["clip_id"],
        text["question"],
        text["answer"],
        frames.astype(np.uint8),
        keep,
        window,
        (text["clip_id"], round(ratio, 6), arch, layer, seed, protocol, variant),
    )


def collect_examples(data: GridData) -> tuple[list[KeepExample], list[str]]:
    """Examples of done cells, and notes on files that could not be read."""
    examples, notes = [], []
    done = data.cells[data.cells["state"] == "done"]
    for _, cell in done.iterrows():
        if not isinstance(cell["cell_dir"], str):
            continue
        path = Path(cell["cell_dir"]) / EXAMPLE
        if path.is_file():
            try:
                examples.append(
                    load_example(
                        path,
                        cell["arch"],
                        cell["layer"],
                        cell["seed"],
                        str(cell.get("protocol") or ""),
                        str(cell.get("variant") or ""),
                    )
                )
            except (ValueError, OSError) as exc:
                notes.append(str(exc))
    return examples, notes


def pick_slice(examples: list[KeepExample], labels: Labels) -> list[KeepExample]:
    """The (clip, ratio, arch, layer, seed, protocol, variant) slice with the most methods (pruned
    ones first, then one with a trained reducer), one example per method, in display order: every
    row of the figure comes from the same weights' protocol (never zero-shot beside fine-tuned)."""
    slices: dict[tuple, dict[str, KeepExample]] = {}
    for ex in examples:
        slices.setdefault(ex.slice_key, {}).setdefault(ex.method, ex)

    def score(item):
        key, by_method = item
        pruned = sum(not labels.is_reference(m) for m in by_method)
        trained = any(labels.trained(m) for m in by_method)
        return (-pruned, -len(by_method), not trained, str(key))

    _, best = sorted(slices.items(), key=score)[0]
    chosen = [ex for m, ex in best.items() if not labels.is_reference(m)] or list(best.values())
    return sorted(chosen, key=lambda ex: labels.order("method", ex.method))


def window_edges(size: int, cells: int, window: int) -> np.ndarray:
    """Pixel edges of `cells` windows along a side: `window` pixels each when that tiles the
    side (last one ragged), else an even split."""
    if window > 0 and math.ceil(size / window) == cells:
        return np.minimum(np.arange(cells + 1) * window, size).astype(float)
    return np.linspace(0, size, cells + 1)


def make(data: GridData, out_dir: str | Path) -> list[Path]:
    examples, notes = collect_examples(data)
    if not examples:
        reason = "no diagnostics/keep_example.npz in done cells"
        raise SkipFigure(reason + (f" ({'; '.join(notes)})" if notes else ""))
    rows = pick_slice(examples, data.labels)
    n_frames = rows[0].frames.shape[0]
    rows = [ex for ex in rows if ex.frames.shape[0] == n_frames]
    shown = np.unique(
        np.linspace(0, n_frames - 1, min(n_frames, MAX_FRAMES_SHOWN)).round().astype(int)
    )
    with style.paper_style():
        fig = style.new_figure(1.05 * len(shown) + 1.3, 1.05 * len(rows) + 2.4)
        grid = fig.add_gridspec(len(rows) + 1, len(shown), height_ratios=[1.0] * len(rows) + [1.5])
        for r, ex in enumerate(rows):
            _frame_row(fig, grid, r, ex, shown, data.labels.label("method", ex.method))
        _kept_plot(fig.add_subplot(grid[len(rows), :]), rows, data.labels)
        first = rows[0]
        arch, layer, seed, protocol, variant = first.slice_key[2:]
        arch = data.labels.label("arch", arch)
        style.set_title(
            fig,
            f"{data.grid}: which visual windows reach the LLM",
            "shaded and hatched windows are dropped",
            f"clip {first.clip_id}, prune ratio {first.ratio:g}, {arch}, "
            f"pruned after ViT block {layer}, seed {seed}"
            + (f", {protocol_label(protocol)}" if protocol and protocol != "scratch" else "")
            + (f", variant {variant}" if variant else ""),
            f"Q: {first.question}  A: {first.answer}" if first.question else "",
        )
        return style.save(fig, out_dir, NAME)


def _frame_row(fig, grid, r: int, ex: KeepExample, shown: np.ndarray, label: str) -> None:
    _, h, w, _ = ex.frames.shape
    ys = window_edges(h, ex.keep.shape[1], ex.window)
    xs = window_edges(w, ex.keep.shape[2], ex.window)
    look = style.method_style(ex.method)
    for c, f in enumerate(shown):
        ax = fig.add_subplot(grid[r, c])
        ax.imshow(ex.frames[f], interpolation="nearest")
        for i in range(ex.keep.shape[1]):
            for j in range(ex.keep.shape[2]):
                if not ex.keep[f, i, j]:
                    ax.add_patch(
                        Rectangle(
                            (xs[j] - 0.5, ys[i] - 0.5),
                            xs[j + 1] - xs[j],
                            ys[i + 1] - ys[i],
                            facecolor=(0, 0, 0, 0.55),
                            edgecolor=(1, 1, 1, 0.7),
                            hatch="////",
                            linewidth=0,
                        )
                    )
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
        for spine in ax.spines.values():
            spine.set_visible(True)
            spine.set_color(look.color)
            spine.set_linewidth(1.5)
        if r == 0:
            ax.set_title(f"frame {f}", fontsize=8.5)
        if c == 0:
            kept, total = int(ex.keep.sum()), ex.keep.size
            ax.set_ylabel(f"{label}\n{kept}/{total} kept", color=look.color, fontsize=9)


def _kept_plot(ax, rows: list[KeepExample], labels: Labels) -> None:
    for ex in rows:
        look = style.method_style(ex.method)
        per_frame = ex.keep.reshape(ex.keep.shape[0], -1).sum(axis=1)
        ax.plot(
            np.arange(len(per_frame)),
            per_frame,
            color=look.color,
            marker=look.marker,
            label=labels.label("method", ex.method),
        )
    per = rows[0].keep.shape[1] * rows[0].keep.shape[2]
    ax.set_ylim(-0.5, per + 0.5)
    ax.set_xlabel("frame")
    ax.set_ylabel("kept windows\nper frame")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5))
