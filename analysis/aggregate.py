"""Seeds → mean ± std per (grid, arch, method, ratio, layer, protocol), with Δ vs the unpruned.

The unpruned reference of a cell is the done cell of the reference method (`display.method.
is_reference`, see analysis.display) of the same grid, arch, seed and protocol (the same layer when
several exist): a fine-tuned cell against the unpruned model fine-tuned for the same steps, a
from-scratch cell against the unpruned from-scratch cell, and a zero-shot cell against its base
(the unpruned model it was evaluated from). Δ accuracy and the memory ratio are computed per seed
against that seed's reference and then averaged, so a group is compared with exactly its seed set.
Speed-ups are never step times of different cells divided by each other: each cell measures its
own against the unpruned model of the same geometry, side by side in one process
(`speedup_train_measured`); the analytic FLOPs speed-up sits beside it. A group whose |Δ accuracy|
is within the seed spread (its std over seeds) is flagged `within seed spread`, never ranked.
Only done cells enter a mean; the others are counted, named in `states` and `flag`, never averaged.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from analysis.display import DISPLAY_COLUMNS, PROTOCOL_ORDER, resolve_display
from core.results import STATES, State

GROUP_KEYS = ("grid", "arch", "method", "ratio", "layer", "protocol", "variant")
# The protocol whose unpruned cell is the reference of each protocol's cells.
REFERENCE_PROTOCOL = {
    "finetune": "finetune",
    "zeroshot": "base",
    "base": "base",
    "scratch": "scratch",
}

BASE_METRICS = (
    "accuracy",
    "chance",
    "train_loss",
    "caption_loss",
    "caption_perplexity",
    "eval_samples",
    "bad_samples",
    "vision_tokens_llm",
    "vision_tokens_full",
    "vision_tokens_final",
    "kept_fraction",
    "llm_kept_fraction",
    "vit_gflops",
    "reducer_gflops",
    "vision_gflops",
    "connector_gflops",
    "llm_gflops",
    "total_gflops",
    "train_step_s",
    "eval_clips_per_s",
    "prefill_latency_s",
    "peak_memory_mb",
    "wall_s",
    "speedup_flops_analytic",
    "speedup_train_measured",
    "speedup_train_measured_q1",
    "speedup_train_measured_q3",
    "speedup_prefill_measured",
    "measured_over_analytic",
)
DERIVED = (
    "delta_accuracy",
    "speedup_step",
    "speedup_gflops",
    "speedup_vision_gflops",
    "memory_ratio",
)
_REF_INPUTS = ("accuracy", "total_gflops", "vision_gflops", "peak_memory_mb")


def add_reference(cells: pd.DataFrame) -> pd.DataFrame:
    """Per-cell columns ref_cell_id, ref_accuracy, delta_accuracy, speedup_step (the cell's own
    side-by-side measured train-step speed-up), speedup_gflops (reference total_gflops / cell's),
    speedup_vision_gflops (the same for the ViT plus its reducer's scoring)
    and memory_ratio (cell peak_memory_mb / reference's); NaN where the cell or its reference is
    not done."""
    out = with_display(cells.reset_index(drop=True))
    # the vision side's cost: the ViT and the reducer that scores inside it
    nan = pd.Series(np.nan, index=out.index)
    vit = pd.to_numeric(out.get("vit_gflops", nan), errors="coerce")
    reducer = pd.to_numeric(out.get("reducer_gflops", nan), errors="coerce").fillna(0.0)
    out["vision_gflops"] = vit + reducer
    if "protocol" not in out.columns:
        out["protocol"] = "scratch"
    out["protocol"] = out["protocol"].fillna("scratch")
    if "variant" not in out.columns:
        out["variant"] = ""
    out["variant"] = out["variant"].fillna("")
    out["_ref_protocol"] = out["protocol"].map(REFERENCE_PROTOCOL).fillna(out["protocol"])
    ref_cols = {c: f"ref_{c}" for c in ("cell_id", *_REF_INPUTS) if c in out.columns}
    done_refs = out[
        (out["state"] == State.DONE) & out["method_is_reference"] & (out["variant"] == "")
    ]
    # a from-scratch cell of a protocol grid (a scratch variant): its reference is the base, the
    # unpruned model trained from scratch for the same budget
    scratch_refs = set(done_refs.loc[done_refs["protocol"] == "scratch", "grid"])
    lone = (out["protocol"] == "scratch") & ~out["grid"].isin(scratch_refs)
    out.loc[lone, "_ref_protocol"] = "base"
    refs = done_refs[["grid", "arch", "seed", "layer", "protocol", *ref_cols]].rename(
        columns={**ref_cols, "protocol": "_ref_protocol"}
    )
    keys = ["grid", "arch", "seed", "_ref_protocol"]
    exact = refs.drop_duplicates([*keys, "layer"])
    fallback = refs.sort_values("layer").drop_duplicates(keys).drop(columns="layer")
    base = out[keys + ["layer"]].reset_index()
    matched = base.merge(exact, on=[*keys, "layer"], how="left").set_index("index")
    other = base.merge(fallback, on=keys, how="left").set_index("index")
    matched = matched.combine_first(other).reindex(out.index)
    is_done = out["state"] == State.DONE
    for col in ("ref_cell_id", "ref_accuracy", *DERIVED):
        out[col] = np.nan
    out["ref_cell_id"] = matched["ref_cell_id"].where(is_done).astype(object)

    def col(frame: pd.DataFrame, name: str) -> pd.Series:
        values = frame[name] if name in frame else pd.Series(np.nan, index=frame.index)
        return pd.to_numeric(values, errors="coerce").where(is_done)

    def ratio(num: pd.Series, den: pd.Series) -> pd.Series:
        return num / den.where(den > 0)

    out["ref_accuracy"] = col(matched, "ref_accuracy")
    out["delta_accuracy"] = col(out, "accuracy") - out["ref_accuracy"]
    out["speedup_step"] = col(out, "speedup_train_measured")
    out["speedup_gflops"] = ratio(col(matched, "ref_total_gflops"), col(out, "total_gflops"))
    out["speedup_vision_gflops"] = ratio(
        col(matched, "ref_vision_gflops"), col(out, "vision_gflops")
    )
    out["memory_ratio"] = ratio(col(out, "peak_memory_mb"), col(matched, "ref_peak_memory_mb"))
    return out.drop(columns="_ref_protocol")


def with_display(cells: pd.DataFrame) -> pd.DataFrame:
    """`cells` with resolved display columns (as load_results gives them; also for frames built
    by hand)."""
    return cells.copy() if set(DISPLAY_COLUMNS) <= set(cells.columns) else resolve_display(cells)


def metric_columns(cells: pd.DataFrame) -> list[str]:
    """Metrics to aggregate: the base set and derived ones (always, NaN when no cell has them, so
    downstream tables never miss a column) plus every per-question-type accuracy present."""
    extra = [c for c in cells.columns if c.startswith("acc_")]
    return [*BASE_METRICS, *extra, *DERIVED]


def aggregate(cells: pd.DataFrame, metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per group with n (done seeds), n_planned, per-state counts, `states`, `seeds`,
    `flag`, the display columns, and `<metric>_mean` / `<metric>_std` (sample std over done
    seeds; NaN when n < 2)."""
    if "delta_accuracy" not in cells.columns:
        cells = add_reference(cells)
    cells = with_display(cells)
    for column, default in (("protocol", "scratch"), ("variant", "")):
        cells[column] = cells[column].fillna(default) if column in cells else default
    metrics = list(metrics) if metrics is not None else metric_columns(cells)
    rows = []
    for key, members in cells.groupby(list(GROUP_KEYS), dropna=False, sort=False):
        rows.append(_group_row(dict(zip(GROUP_KEYS, key, strict=True)), members, metrics))
    agg = pd.DataFrame(rows)
    if agg.empty:
        cols = [*GROUP_KEYS, "n", "n_planned", "state", "states", "seeds", "flag", *DISPLAY_COLUMNS]
        return pd.DataFrame(columns=cols + [f"{m}_{s}" for m in metrics for s in ("mean", "std")])
    return sort_groups(agg)


def sort_groups(frame: pd.DataFrame) -> pd.DataFrame:
    """Order rows by grid, arch (display order), method (display order), ratio, layer; keys
    without an order come after the ordered ones, alphabetically."""
    key = frame.assign(
        _arch=pd.to_numeric(frame.get("arch_order"), errors="coerce"),
        _method=pd.to_numeric(frame.get("method_order"), errors="coerce"),
    )
    key["_protocol"] = (
        key["protocol"].map({p: i for i, p in enumerate(PROTOCOL_ORDER)})
        if "protocol" in key
        else 0
    )
    cols = ["grid", "_arch", "arch", "_protocol", "_method", "method", "ratio", "layer"]
    key = key.sort_values([c for c in cols if c in key.columns], na_position="last")
    return key.drop(columns=["_arch", "_method", "_protocol"]).reset_index(drop=True)


def group_state(counts: dict[str, int]) -> str:
    """done (all seeds done), partial (some), or the non-done states joined, e.g. new/failed."""
    planned = sum(counts.values())
    done = counts.get(State.DONE, 0)
    if planned and done == planned:
        return State.DONE
    if done:
        return "partial"
    return "/".join(s for s in STATES if counts.get(s)) or "new"


def _group_row(key: dict, members: pd.DataFrame, metrics: Iterable[str]) -> dict:
    counts = {s: int((members["state"] == s).sum()) for s in STATES}
    done = members[members["state"] == State.DONE]
    row = dict(key)
    row.update({col: members[col].iloc[0] for col in DISPLAY_COLUMNS})
    row.update(n=len(done), n_planned=len(members), **{f"n_{s}": counts[s] for s in STATES})
    row["state"] = group_state(counts)
    row["states"] = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    row["seeds"] = ",".join(str(s) for s in sorted(done["seed"].dropna().tolist()))
    row["n_ref"] = int(done["delta_accuracy"].notna().sum()) if "delta_accuracy" in done else 0
    for m in metrics:
        values = pd.to_numeric(done[m], errors="coerce") if m in done else pd.Series(dtype=float)
        row[f"{m}_mean"] = values.mean() if values.notna().any() else np.nan
        row[f"{m}_std"] = values.std(ddof=1) if values.notna().sum() >= 2 else np.nan
    row["within_spread"] = within_seed_spread(row)
    row["flag"] = _flag(members, done, counts, row["n_ref"], row["method_is_reference"])
    if row["within_spread"]:
        row["flag"] = "; ".join(f for f in ("within seed spread", row["flag"]) if f)
    return row


def within_seed_spread(row: dict) -> bool:
    """True when the group's mean Δ accuracy is no larger than its std over seeds (the difference
    from the reference cannot be told from seed noise); False for references and single seeds."""
    mean, std = row.get("delta_accuracy_mean"), row.get("delta_accuracy_std")
    if row.get("method_is_reference") or mean is None or std is None:
        return False
    return bool(np.isfinite(mean) and np.isfinite(std) and abs(mean) <= std)


def _flag(
    members: pd.DataFrame, done: pd.DataFrame, counts: dict[str, int], n_ref: int, is_ref: bool
) -> str:
    notes = [f"{n} {s}" for s, n in counts.items() if s != State.DONE and n]
    if len(done) and n_ref < len(done) and not is_ref:
        notes.append(f"no done reference for {len(done) - n_ref} seed(s)")
    if "config_mismatch" in members:
        mism = sorted({c for v in done["config_mismatch"].dropna() for c in str(v).split(",") if c})
        if mism:
            notes.append(f"config differs across seeds: {', '.join(mism)}")
    return "; ".join(notes)
