"""Efficiency–accuracy, Pareto and per-question-type tables as CSV, Markdown and LaTeX (booktabs).

CSV files hold the numbers (means, stds, counts, states); Markdown and LaTeX hold the formatted text
a reader sees, where groups without done seeds show their state ("new", "failed", ...) and groups
with some seeds not done show e.g. "2/3 (1 failed)". Method names are the cells' display labels.

Rows are grouped by the stage a method acts at (`display.method.stage`, in pipeline order: before
the ViT, in it, after it, in the LLM; the unpruned reference first), within each grid, arch and
protocol; LaTeX puts a rule between groups. Vision tokens read "input → last layer" for methods
that drop inside the LLM, beside the layer-averaged kept fraction every method reports.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from analysis.aggregate import GROUP_KEYS, with_display
from analysis.display import protocol_label
from analysis.pareto import add_frontiers

DASH = "–"

EFFICIENCY_NUMERIC = (
    "n",
    "n_planned",
    "state",
    "states",
    "flag",
    "seeds",
    "accuracy_mean",
    "accuracy_std",
    "delta_accuracy_mean",
    "delta_accuracy_std",
    "method_stage",
    "vision_tokens_llm_mean",
    "vision_tokens_full_mean",
    "vision_tokens_final_mean",
    "kept_fraction_mean",
    "llm_kept_fraction_mean",
    "vit_gflops_mean",
    "llm_gflops_mean",
    "total_gflops_mean",
    "speedup_gflops_mean",
    "vision_gflops_mean",
    "speedup_vision_gflops_mean",
    "train_step_s_mean",
    "train_step_s_std",
    "speedup_step_mean",
    "speedup_step_std",
    "speedup_train_measured_q1_mean",
    "speedup_train_measured_q3_mean",
    "speedup_prefill_measured_mean",
    "speedup_flops_analytic_mean",
    "measured_over_analytic_mean",
    "peak_memory_mb_mean",
    "memory_ratio_mean",
    "within_spread",
)
# Where a method acts, in the order a clip meets the stages (display.method.stage values).
STAGES = {
    "pre_vit": "before the ViT",
    "in_vit": "in the ViT",
    "post_vit": "after the ViT",
    "in_llm": "in the LLM",
}


# ---- formatting helpers ---------------------------------------------------------------------------


def _ok(x: object) -> bool:
    return x is not None and not (isinstance(x, float) and math.isnan(x)) and x is not pd.NA


def fmt_pm(mean: float, std: float, scale: float = 100.0, digits: int = 1) -> str:
    """'75.0 ± 1.0' (std omitted when undefined, e.g. one seed)."""
    if not _ok(mean):
        return DASH
    text = f"{mean * scale:.{digits}f}"
    return f"{text} ± {std * scale:.{digits}f}" if _ok(std) else text


def fmt_num(x: float, digits: int = 2, suffix: str = "", signed: bool = False) -> str:
    if not _ok(x):
        return DASH
    text = f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"
    return text.replace("-", "−") + suffix


def seeds_text(row: pd.Series) -> str:
    """'3/3', or '2/3 (1 failed)' when some seeds are not done."""
    text = f"{int(row['n'])}/{int(row['n_planned'])}"
    others = [p for p in str(row.get("states", "")).split(", ") if p and not p.endswith(" done")]
    return f"{text} ({', '.join(others)})" if others else text


def _value_or_state(row: pd.Series, text: str) -> str:
    return text if row["n"] > 0 else str(row["state"])


def _layer_text(row: pd.Series) -> str:
    """The ViT block pruned after: meaningless for the reference and for reducers outside the ViT."""
    stage = row.get("method_stage")
    outside_vit = isinstance(stage, str) and stage != "in_vit"
    if row["method_is_reference"] or outside_vit or not _ok(row["layer"]):
        return DASH
    return str(int(row["layer"]))


def stage_rank(row: pd.Series) -> int:
    """Pipeline position of the row's method: the reference first, unknown stages last."""
    if row.get("method_is_reference"):
        return -1
    return list(STAGES).index(row["method_stage"]) if row.get("method_stage") in STAGES else 99


def stage_label(row: pd.Series) -> str:
    stage = row.get("method_stage")
    if row.get("method_is_reference") or not isinstance(stage, str):
        return DASH
    return STAGES.get(stage, stage)


def group_by_stage(agg: pd.DataFrame) -> pd.DataFrame:
    """`agg` (in `sort_groups` order) with each grid × arch × protocol block's rows grouped by
    stage, keeping the order within a stage."""
    agg = with_display(agg).reset_index(drop=True)
    if agg.empty:
        return agg
    blocks = agg[[c for c in ("grid", "arch", "protocol") if c in agg]].astype(str)
    block = blocks.apply("|".join, axis=1)
    first = {b: i for i, b in reversed(list(enumerate(block)))}
    key = pd.DataFrame({"_block": block.map(first), "_stage": agg.apply(stage_rank, axis=1)})
    return agg.loc[key.sort_values(["_block", "_stage"], kind="stable").index].reset_index(
        drop=True
    )


def _label_columns(agg: pd.DataFrame) -> pd.DataFrame:
    agg = with_display(agg)
    cols = {}
    if agg["grid"].nunique() > 1:
        cols["Grid"] = agg["grid"]
    cols["Arch"] = agg["arch_label"].astype(str)
    if "protocol" in agg and set(agg["protocol"].dropna()) - {"scratch"}:
        cols["Protocol"] = agg["protocol"].map(protocol_label)
    cols["Stage"] = agg.apply(stage_label, axis=1)
    cols["Method"] = agg["method_label"].astype(str)
    if "variant" in agg and agg["variant"].fillna("").astype(str).str.len().any():
        cols["Variant"] = agg["variant"].fillna("").map(lambda v: v or DASH)
    cols["Ratio"] = agg["ratio"].map(lambda r: f"{r:g}" if _ok(r) else DASH)
    cols["Layer"] = agg.apply(_layer_text, axis=1)
    return pd.DataFrame(cols, index=agg.index)


def _delta_text(row: pd.Series) -> str:
    """'+1.2 ± 0.8', with '≈' in front when the difference is within the seed spread."""
    mean, std = row["delta_accuracy_mean"], row.get("delta_accuracy_std")
    text = fmt_num(mean * 100, 1, signed=True)
    if _ok(std) and _ok(mean):
        text += f" ± {std * 100:.1f}"
    return f"≈ {text}" if row.get("within_spread") is True else text


def _speedup_text(row: pd.Series) -> str:
    """'1.42× [1.38–1.45]': the median side-by-side speed-up and its quartiles (seed means)."""
    text = fmt_num(row["speedup_step_mean"], 2, "×")
    q1, q3 = row.get("speedup_train_measured_q1_mean"), row.get("speedup_train_measured_q3_mean")
    return f"{text} [{q1:.2f}–{q3:.2f}]" if _ok(q1) and _ok(q3) and text != DASH else text


def _tokens_text(row: pd.Series) -> str:
    """Visual tokens at the LLM input, '→ n' more when the last LLM layer sees fewer."""
    text = fmt_num(row["vision_tokens_llm_mean"], 0)
    final = row.get("vision_tokens_final_mean")
    if _ok(final) and _ok(row["vision_tokens_llm_mean"]) and final < row["vision_tokens_llm_mean"]:
        text += f" → {final:.0f}"
    return text


def _with_ratio(value: float, ratio: float, digits: int) -> str:
    """'3.97 (1.61×)': a value and its ratio to the reference (omitted when undefined)."""
    return fmt_num(value, digits) + (f" ({fmt_num(ratio, 2, '×')})" if _ok(ratio) else "")


# ---- the tables -----------------------------------------------------------------------------------


def efficiency_table(agg: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(formatted, numeric) efficiency–accuracy table per arch × method × ratio × layer."""
    agg = group_by_stage(agg)
    numeric = agg[[*GROUP_KEYS, *(c for c in EFFICIENCY_NUMERIC if c in agg)]].copy()
    if agg.empty:
        return pd.DataFrame(), numeric
    shown = _label_columns(agg)
    shown["Seeds"] = agg.apply(seeds_text, axis=1)
    shown["Accuracy (%)"] = agg.apply(
        lambda r: _value_or_state(r, fmt_pm(r["accuracy_mean"], r["accuracy_std"])), axis=1
    )
    shown["Δ acc (pp)"] = agg.apply(
        lambda r: _value_or_state(r, _delta_text(r)),
        axis=1,
    )
    shown["Vision tokens"] = agg.apply(_tokens_text, axis=1)
    shown["Kept, layer avg (%)"] = agg.get(
        "llm_kept_fraction_mean", pd.Series(float("nan"), index=agg.index)
    ).map(lambda v: fmt_num(v * 100, 0) if _ok(v) else DASH)
    shown["GFLOPs"] = agg.apply(
        lambda r: _with_ratio(r["total_gflops_mean"], r["speedup_gflops_mean"], 2), axis=1
    )
    shown["ViT GFLOPs (+ scoring)"] = agg.apply(
        lambda r: _with_ratio(r["vision_gflops_mean"], r["speedup_vision_gflops_mean"], 3), axis=1
    )
    shown["Step (s)"] = agg["train_step_s_mean"].map(lambda v: fmt_num(v, 3))
    shown["Speed-up (measured)"] = agg.apply(_speedup_text, axis=1)
    shown["Measured / analytic"] = agg["measured_over_analytic_mean"].map(lambda v: fmt_num(v, 2))
    shown["Memory (MB)"] = agg.apply(
        lambda r: _with_ratio(r["peak_memory_mb_mean"], r["memory_ratio_mean"], 0), axis=1
    )
    return shown.reset_index(drop=True), numeric.reset_index(drop=True)


def pareto_table(agg: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Groups on the accuracy–GFLOPs or accuracy–speed-up frontier of their (grid, arch)."""
    marked = group_by_stage(add_frontiers(agg))
    front = marked[marked["on_front_gflops"] | marked["on_front_speedup"]]
    numeric = front[
        [
            *GROUP_KEYS,
            "n",
            "accuracy_mean",
            "accuracy_std",
            "total_gflops_mean",
            "speedup_step_mean",
            "on_front_gflops",
            "on_front_speedup",
        ]
    ].copy()
    if front.empty:
        return pd.DataFrame(), numeric.reset_index(drop=True)
    shown = _label_columns(front)
    shown["Accuracy (%)"] = front.apply(
        lambda r: fmt_pm(r["accuracy_mean"], r["accuracy_std"]), axis=1
    )
    shown["GFLOPs"] = front["total_gflops_mean"].map(lambda v: fmt_num(v, 2))
    shown["Speed-up"] = front["speedup_step_mean"].map(lambda v: fmt_num(v, 2, "×"))
    shown["Frontier"] = front.apply(
        lambda r: ", ".join(
            n
            for n, on in (("GFLOPs", r["on_front_gflops"]), ("speed-up", r["on_front_speedup"]))
            if on
        ),
        axis=1,
    )
    return shown.reset_index(drop=True), numeric.reset_index(drop=True)


def qtype_table(agg: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-question-type accuracy (%) per group, with the overall accuracy and chance."""
    agg = group_by_stage(agg)
    types = sorted(
        c[len("acc_") : -len("_mean")]
        for c in agg.columns
        if c.startswith("acc_") and c.endswith("_mean")
    )
    keep = [*GROUP_KEYS, "n", "state", "accuracy_mean", "chance_mean"]
    numeric = agg[
        [c for c in keep if c in agg] + [f"acc_{t}_{s}" for t in types for s in ("mean", "std")]
    ].copy()
    if agg.empty or not types:
        return pd.DataFrame(), numeric.reset_index(drop=True)
    shown = _label_columns(agg)
    for t in types:
        shown[t.replace("_", " ")] = agg.apply(
            lambda r, t=t: _value_or_state(r, fmt_pm(r[f"acc_{t}_mean"], r[f"acc_{t}_std"])), axis=1
        )
    shown["All"] = agg.apply(
        lambda r: _value_or_state(r, fmt_pm(r["accuracy_mean"], r["accuracy_std"])), axis=1
    )
    if "chance_mean" in agg:
        shown["Chance"] = agg["chance_mean"].map(lambda v: fmt_num(v * 100, 1))
    return shown.reset_index(drop=True), numeric.reset_index(drop=True)


# ---- rendering ------------------------------------------------------------------------------------


def to_markdown(table: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table; numbers right-aligned, text left-aligned."""
    if table.empty:
        return "_no rows_\n"
    header = [str(c) for c in table.columns]
    body = [[str(v).replace("|", "\\|") for v in row] for row in table.itertuples(index=False)]
    align = ["---:" if _numeric_column(table[c]) else ":---" for c in table.columns]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines) + "\n"


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}
_LATEX_UNICODE = {
    "±": r"$\pm$",
    "Δ": r"$\Delta$",
    "×": r"$\times$",
    "−": "$-$",
    "–": "--",
    "≤": r"$\leq$",
    "≥": r"$\geq$",
}


def latex_escape(text: object) -> str:
    """Escape LaTeX specials (underscores included) and map the few Unicode symbols we print."""
    out = "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))
    return "".join(_LATEX_UNICODE.get(ch, ch) for ch in out)


def to_latex(table: pd.DataFrame, caption: str = "", label: str = "") -> str:
    """A booktabs `table` float (needs \\usepackage{booktabs,graphicx}); a \\midrule separates
    archs, grids, protocols and stages. Tables wider than the text are scaled down to \\linewidth,
    never up."""
    if table.empty:
        return "% no rows\n"
    spec = "".join("r" if _numeric_column(table[c]) else "l" for c in table.columns)
    lines = [
        r"% needs \usepackage{booktabs,graphicx}",
        r"\begin{table}[t]",
        r"\centering",
        r"\small",
        r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%",
        rf"\begin{{tabular}}{{{spec}}}",
        r"\toprule",
        " & ".join(latex_escape(c) for c in table.columns) + r" \\",
        r"\midrule",
    ]
    split = [c for c in ("Grid", "Arch", "Protocol", "Stage") if c in table.columns]
    previous = None
    for row in table.itertuples(index=False):
        key = tuple(getattr(row, c) for c in split) if split else None
        if previous is not None and key != previous:
            lines.append(r"\midrule")
        previous = key
        lines.append(" & ".join(latex_escape(v) for v in row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}}"]
    if caption:
        lines.append(rf"\caption{{{latex_escape(caption)}}}")
    if label:
        lines.append(rf"\label{{{label}}}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def _numeric_column(col: pd.Series) -> bool:
    def numeric(v: object) -> bool:
        s = str(v).replace("−", "-").replace("×", "").replace("+", "")
        s = s.split("(")[0].split("±")[0].strip()
        if s in ("", DASH):
            return True
        try:
            float(s)
        except ValueError:
            return False
        return True

    values = [v for v in col if str(v) != DASH]
    return bool(values) and sum(map(numeric, values)) >= 0.5 * len(values)


def write_table(
    shown: pd.DataFrame, numeric: pd.DataFrame, stem: str | Path, caption: str = "", label: str = ""
) -> dict[str, Path]:
    """stem.csv (numbers), stem.md and stem.tex (formatted); returns the three paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = {
        "csv": stem.with_suffix(".csv"),
        "md": stem.with_suffix(".md"),
        "tex": stem.with_suffix(".tex"),
    }
    numeric.to_csv(paths["csv"], index=False)
    paths["md"].write_text((f"{caption}\n\n" if caption else "") + to_markdown(shown))
    paths["tex"].write_text(to_latex(shown, caption, label))
    return paths


def write_tables(agg: pd.DataFrame, out_dir: str | Path, title: str = "") -> dict[str, Path]:
    """Write the efficiency, Pareto and per-question-type tables; keys like 'efficiency_tex'."""
    out_dir = Path(out_dir)
    prefix = f"{title}: " if title else ""
    specs = {
        "efficiency": (
            efficiency_table,
            "efficiency–accuracy per arch, method, ratio and layer "
            "(mean ± std over seeds; Δ, speed-ups and memory vs the unpruned model)",
        ),
        "pareto": (
            pareto_table,
            "Pareto-optimal settings (accuracy vs GFLOPs / measured speed-up, per arch)",
        ),
        "qtypes": (qtype_table, "accuracy (%) per question type"),
    }
    paths: dict[str, Path] = {}
    for name, (build, caption) in specs.items():
        shown, numeric = build(agg)
        label = f"tab:{name}" + (f"-{title}" if title else "")
        for fmt, path in write_table(
            shown, numeric, out_dir / name, prefix + caption, label
        ).items():
            paths[f"{name}_{fmt}"] = path
    return paths
