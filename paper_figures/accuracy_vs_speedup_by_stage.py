"""(d) Accuracy vs MEASURED speed-up over the unpruned model, every method coloured by its stage.

One column per arch, one row per protocol: trained cells (fine-tuned, or from scratch) against
their measured train-step speed-up, zero-shot cells against their measured prefill speed-up (the
inference they are for); both are timed in the cell side by side with the unpruned model of the
same geometry (`efficiency.speedup_*_measured`), so a method whose FLOPs saving does not turn into
time sits at ~1×. Colour = where the method acts (before the ViT, in it, after it, in the LLM),
marker = method, each point labelled with the method's short name and its budget (the kept
fraction at the LLM input, or after the last drop for in-LLM methods); the
unpruned accuracy is a dashed line and 1× a dotted one. The two plain baselines the field finds
strong, fewer frames and spatial pooling to the same count, are always drawn (larger, outlined);
when the grid has no done cell of one, the figure says so in its title instead of hiding it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from analysis.aggregate import REFERENCE_PROTOCOL
from analysis.data import GridData
from analysis.display import PROTOCOL_LABELS
from analysis.tables import STAGES
from paper_figures import style
from paper_figures.common import SkipFigure, pct

NAME = "accuracy_vs_speedup_by_stage"
BASELINES = ("fewer_frames", "pool")  # always drawn (the brief's plain baselines)
STAGE_COLORS = {
    "pre_vit": "#D55E00",
    "in_vit": "#0072B2",
    "post_vit": "#009E73",
    "in_llm": "#CC79A7",
}
OTHER_STAGE = "#7f7f7f"
PROTOCOL_ORDER = ("finetune", "scratch", "zeroshot")
STEP, PREFILL = "speedup_step_mean", "speedup_prefill_measured_mean"


def speedup_column(protocol: str) -> str:
    """Zero-shot cells are inference: their prefill speed-up; trained cells: their train step."""
    return PREFILL if protocol == "zeroshot" else STEP


def make(data: GridData, out_dir: str | Path) -> list[Path]:
    rows = _points(data)
    if rows.empty:
        raise SkipFigure(
            "no done pruned cells with a measured speed-up (the cell measures it side by side "
            "with the unpruned model; eval.measure_efficiency must be on)"
        )
    protocols = [p for p in PROTOCOL_ORDER if p in set(rows["protocol"])]
    archs = [a for a in data.archs if a in set(rows["arch"])]
    with style.paper_style():
        fig = style.new_figure(4.0 * len(archs) + 0.6, 3.4 * len(protocols) + 0.9)
        grid = fig.subplots(len(protocols), len(archs), squeeze=False, sharey="row")
        for r, protocol in enumerate(protocols):
            for c, arch in enumerate(archs):
                ax = grid[r][c]
                part = rows[(rows["protocol"] == protocol) & (rows["arch"] == arch)]
                _draw(ax, data, part, speedup_column(protocol))
                _reference(ax, data, arch, protocol)
                ax.axvline(1.0, color="#444444", linestyle=":", linewidth=1.0)
                ax.set_title(f"{data.labels.label('arch', arch)} · {PROTOCOL_LABELS[protocol]}")
                kind = "prefill" if speedup_column(protocol) == PREFILL else "train-step"
                ax.set_xlabel(f"measured {kind} speed-up (×)")
                _pad_x(ax, np.append(part["_x"].to_numpy(dtype=float), 1.0))
            grid[r][0].set_ylabel("val accuracy (%)")
        _legend(fig, rows)
        missing = [m for m in BASELINES if m not in set(rows["method"])]
        style.set_title(
            fig,
            f"{data.grid}: accuracy vs measured speed-up, by stage",
            "mean ± std over seeds; labels: method · kept-token budget"
            + (f"; baselines not in this grid: {', '.join(missing)}" if missing else ""),
        )
        return style.save(fig, out_dir, NAME)


def _points(data: GridData) -> pd.DataFrame:
    """Done, non-reference groups with the speed-up their protocol is drawn against."""
    pruned = data.pruned
    if pruned.empty or "protocol" not in pruned:
        return pruned
    pruned = pruned.assign(protocol=pruned["protocol"].fillna("scratch"))
    pruned = pruned[pruned["protocol"].isin(PROTOCOL_ORDER)]
    if pruned.empty:
        return pruned
    x = pruned.apply(lambda r: r.get(speedup_column(r["protocol"]), np.nan), axis=1)
    pruned = pruned.assign(_x=pd.to_numeric(x, errors="coerce"))
    return pruned[pruned["_x"].notna() & pruned["accuracy_mean"].notna()]


def _draw(ax, data: GridData, part: pd.DataFrame, xcol: str) -> None:
    std_col = xcol.replace("_mean", "_std")
    for method in data.methods(part):
        pts = part[part["method"] == method]
        stage = pts["method_stage"].iloc[0]
        baseline = method in BASELINES
        ax.errorbar(
            pts["_x"],
            pct(pts["accuracy_mean"]),
            yerr=pct(pts["accuracy_std"]),
            xerr=pts.get(std_col),
            color=STAGE_COLORS.get(stage, OTHER_STAGE),
            marker=style.method_style(method).marker,
            markersize=9 if baseline else 6,
            markeredgecolor="black" if baseline else STAGE_COLORS.get(stage, OTHER_STAGE),
            markeredgewidth=1.2 if baseline else 0.5,
            linestyle="none",
            zorder=4 if baseline else 3,
        )
        short = data.labels.table.get(("method", str(method)), {}).get("short") or method
        for _, r in pts.iterrows():  # the budget: kept at the LLM input, or after the last drop
            ax.annotate(
                f"{short} {1.0 - float(r['ratio']):.0%}",
                (r["_x"], r["accuracy_mean"] * 100),
                xytext=(3, 3),
                textcoords="offset points",
                fontsize=6.5,
                color="#333333",
            )


def _pad_x(ax, x: np.ndarray) -> None:
    """Room on the right for the point labels."""
    lo, hi = float(np.nanmin(x)), float(np.nanmax(x))
    pad = 0.1 * (hi - lo or 1.0)
    ax.set_xlim(lo - pad, hi + 3 * pad)


def _reference(ax, data: GridData, arch: str, protocol: str) -> None:
    """The unpruned accuracy these cells are compared with (the base for zero-shot cells)."""
    done = data.done
    want = REFERENCE_PROTOCOL.get(protocol, protocol)
    ref = done[(done["arch"] == arch) & done["method_is_reference"].astype(bool)]
    if "protocol" in ref:
        ref = ref[ref["protocol"].fillna("scratch") == want]
    if ref.empty:
        return
    ax.axhline(ref["accuracy_mean"].iloc[0] * 100, color="black", linestyle="--", linewidth=1.2)


def _legend(fig, rows: pd.DataFrame) -> None:
    """Stages present (colour), then the baselines' look and the reference line."""
    present = sorted(
        dict.fromkeys(rows["method_stage"]),
        key=lambda s: list(STAGES).index(s) if s in STAGES else len(STAGES),
    )
    handles = [
        Line2D([], [], color=STAGE_COLORS.get(s, OTHER_STAGE), marker="o", linestyle="none")
        for s in present
    ]
    labels = [STAGES.get(s, str(s)) for s in present]
    handles += [
        Line2D([], [], color="white", marker="o", markeredgecolor="black", markersize=9,
               markeredgewidth=1.2, linestyle="none"),
        Line2D([], [], color="black", linestyle="--"),
    ]  # fmt: skip
    labels += ["plain baseline (fewer frames, pool)", "unpruned"]
    ncol = max(1, min(len(labels), int(fig.get_figwidth() / 2.3)))  # long labels: ~2.3 in each
    fig.legend(handles, labels, loc="outside lower center", ncol=ncol)
