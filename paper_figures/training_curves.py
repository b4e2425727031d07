"""(g) Training curves from metrics.jsonl: train loss (top) and val accuracy (bottom) vs step, one
line per method (and variant) with a ± std band over seeds, one column per arch × trained protocol
(the base's pre-training, fine-tuning, training from scratch), at the ratio and layer most covered.

Zero-shot cells do not train, so they have no loss curve; in a fine-tuning column their accuracy
is drawn at step 0, hollow: fine-tuning starts from the base's weights, which is exactly what a
zero-shot cell evaluates (the unpruned base, a hollow star, is the reference's step 0).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis.data import GridData, most_covered
from analysis.display import PROTOCOL_ORDER, protocol_label
from paper_figures import style
from paper_figures.common import (
    SkipFigure,
    accuracy_limits,
    chance_line,
    draw_point,
    legend,
    look,
    pct,
    save_spread,
    series_keys,
    series_rows,
)

NAME = "training_curves"
LOSS = "train/loss"
ACCURACY = "val/accuracy"
TASK = "train/task"  # the training task of a logged step (e.g. caption, then qa)
TRAINED = tuple(p for p in PROTOCOL_ORDER if p != "zeroshot")


def curve(rows: pd.DataFrame, column: str) -> pd.DataFrame:
    """Mean, std and seed count of `column` per step over the cells in `rows` (one value per
    cell and step: a requeued cell's repeated step counts once, its last value)."""
    if column not in rows:
        return pd.DataFrame(columns=["step", "mean", "std", "n"])
    values = rows[["cell_id", "step", column]].dropna()
    values = values.drop_duplicates(["cell_id", "step"], keep="last")
    stats = values.groupby("step")[column].agg(["mean", "std", "count"]).reset_index()
    return stats.rename(columns={"count": "n"}).sort_values("step")


def make(data: GridData, out_dir: str | Path) -> list[Path]:
    history = data.history
    logged = {"protocol", "phase", LOSS} <= set(history.columns)
    trained = (
        history[history["protocol"].isin(TRAINED) & (history["phase"] == "train")]
        if logged
        else history.iloc[0:0]
    )
    if trained.empty or LOSS not in trained or trained[LOSS].notna().sum() == 0:
        raise SkipFigure(f"no {LOSS} rows in the metrics.jsonl of done trained cells")
    history = _slice(data, history)
    columns = [
        (arch, protocol)
        for arch in data.archs
        for protocol in TRAINED
        if not history[(history["arch"] == arch) & (history["protocol"] == protocol)].empty
    ]
    ratio, layer = _slice_values(data)
    with style.paper_style():
        fig = style.new_figure(3.0 * len(columns) + 0.6, 5.0)
        axes = fig.subplots(2, len(columns), sharex="col", squeeze=False)
        accuracy, panels = [], []
        for c, (arch, protocol) in enumerate(columns):
            part = history[(history["arch"] == arch) & (history["protocol"] == protocol)]
            loss_ax, acc_ax = axes[0, c], axes[1, c]
            _loss(loss_ax, data, part)
            marks, values = _accuracy(acc_ax, data, part, arch, protocol, ratio, layer)
            accuracy += values
            accuracy.append(chance_line(acc_ax, data))
            loss_ax.set_title(f"{data.labels.label('arch', arch)} · {protocol_label(protocol)}")
            acc_ax.set_xlabel("step")
            panels.append((acc_ax, marks))
        accuracy_limits(axes[1], accuracy)
        axes[0, 0].set_ylabel("train loss")
        axes[1, 0].set_ylabel("val accuracy (%)")
        legend(fig, [*axes[1], *axes[0]], data)  # accuracy first: its handles have markers
        style.set_title(
            fig,
            f"{data.grid}: training curves",
            f"pruned groups at ratio {ratio:g} after ViT block {layer}"
            if ratio is not None
            else "",
            "train loss as logged (mean over seeds, band: ± std; a dashed vertical line where the "
            "training task changes, e.g. from captioning to QA, whose losses differ); val accuracy "
            "at each evaluation (mean ± std over seeds), chance dotted",
            "in a fine-tuning column step 0 is the base's weights: hollow points are the zero-shot "
            "accuracy of each method on the base (no loss curve: zero-shot cells do not train)"
            if any(p == "finetune" for _, p in columns)
            else "",
        )
        return save_spread(fig, panels, out_dir, NAME)


def _slice_values(data: GridData) -> tuple[float | None, int | None]:
    pruned = data.pruned
    if pruned.empty:
        return None, None
    ratio = most_covered(pruned, "ratio", "method")
    layer = most_covered(pruned[pruned["ratio"] == ratio], "layer", "method")
    return float(ratio), int(layer)


def _slice(data: GridData, history: pd.DataFrame) -> pd.DataFrame:
    """The reference's rows and the pruned rows at the most covered ratio and layer."""
    ratio, layer = _slice_values(data)
    reference = history["method"].map(data.labels.is_reference).astype(bool)
    if ratio is None:
        return history[reference]
    at = np.isclose(history["ratio"].astype(float), ratio) & (history["layer"] == layer)
    return history[reference | at]


def _loss(ax, data: GridData, part: pd.DataFrame) -> None:
    train = part[part["phase"] == "train"]
    for key in series_keys(data, train):
        lk = look(data, key)
        stats = curve(series_rows(train, key), LOSS)
        if stats.empty:
            continue
        x, mean, std = stats["step"], stats["mean"], stats["std"].fillna(0.0)
        ax.plot(x, mean, color=lk.color, linewidth=1.3, label=lk.label)
        ax.fill_between(x, mean - std, mean + std, color=lk.color, alpha=0.15, linewidth=0)
    _task_switches(ax, train)


def _task_switches(ax, train: pd.DataFrame) -> None:
    """A vertical line where the training task changes (captioning → QA: another loss), with
    each task named, so a jump in the loss reads as what it is."""
    if TASK not in train or train[TASK].nunique() < 2:
        return
    starts = train.groupby(TASK)["step"].min().sort_values()
    for i, (task, step) in enumerate(starts.items()):
        if i:
            ax.axvline(step, color="#999999", linestyle=(0, (2, 2)), linewidth=0.9, zorder=1)
        ax.annotate(
            str(task),
            (step, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(3, -3),
            textcoords="offset points",
            fontsize=7,
            color="#555555",
            va="top",
        )


def _accuracy(
    ax,
    data: GridData,
    part: pd.DataFrame,
    arch: str,
    protocol: str,
    ratio: float | None,
    layer: int | None,
) -> tuple[list, list[float]]:
    evals = part[part["phase"] == "eval"]
    marks, values = [], []
    for key in series_keys(data, evals):
        lk = look(data, key)
        stats = curve(series_rows(evals, key), ACCURACY)
        if stats.empty:
            continue
        mean, std = pct(stats["mean"]), pct(stats["std"])
        marks.append(draw_point(ax, stats["step"], mean, std, lk, line=len(stats) > 1))
        values += [*(mean - np.nan_to_num(std)), *(mean + np.nan_to_num(std))]
    if protocol == "finetune":  # step 0 of fine-tuning: the base's weights, evaluated zero-shot
        start = data.done[
            (data.done["arch"] == arch)
            & data.done["protocol"].isin(("zeroshot", "base"))
            & (
                data.done["method_is_reference"].astype(bool)
                | (np.isclose(data.done["ratio"].astype(float), ratio or 0.0))
                & (data.done["layer"] == layer)
            )
        ]
        for key in series_keys(data, start):
            lk = look(data, key)
            g = series_rows(start, key).iloc[0]
            mean, std = pct([g["accuracy_mean"]]), pct([g["accuracy_std"]])
            marks.append(draw_point(ax, [0.0], mean, std, lk))
            values += [
                float(mean[0] - np.nan_to_num(std[0])),
                float(mean[0] + np.nan_to_num(std[0])),
            ]
    return marks, values
