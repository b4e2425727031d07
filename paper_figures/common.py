"""What every figure shares beyond the style: the skip signal, percent scaling, the series of a
figure (method × protocol × variant) and their look, points and lines with seed error bars, the
unpruned reference and chance lines, accuracy axes that stay readable for degenerate data, the
legend with the protocol's meaning, and panel titles that name the groups a panel cannot show.

The encoding, the same in every figure and in the HTML report: colour and marker = method (a
variant keeps the colour and gets its own marker); filled = trained weights (fine-tuned, or from
scratch), hollow = the unpruned base's weights (the base itself, and every method evaluated
zero-shot on it); the unpruned model is a star. Error bars are the std over seeds. A group with
seeds not done is labelled with its seed count ("2/3") beside its point.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from analysis.data import GridData
from analysis.display import PROTOCOL_ORDER, protocol_label
from analysis.palette import protocol_fill, series_style
from paper_figures import style
from paper_figures.overlap import Mark, errorbar_artists, spread

CHANCE_COLOR = "#7f7f7f"
MIN_ACCURACY_SPAN = 10.0  # percentage points: an axis never zooms into seed noise alone


class SkipFigure(Exception):
    """The grid lacks the data a figure needs; the message says what is missing."""


def done_pruned(data: GridData, missing: str = "no done pruned cells") -> pd.DataFrame:
    """The done pruned groups of `data`; a figure drawn from them is skipped (`missing`) when there
    are none."""
    pruned = data.pruned
    if pruned.empty:
        raise SkipFigure(missing)
    return pruned


def arch_panels(
    data: GridData, width: float = 3.3, height: float = 3.1
) -> tuple[Figure, np.ndarray]:
    """A figure of one accuracy panel per arch (`width` inches each), sharing the y axis."""
    fig = style.new_figure(width * len(data.archs) + 0.6, height)
    return fig, fig.subplots(1, len(data.archs), sharey=True, squeeze=False)[0]


def series_panels(
    data: GridData,
    rows: pd.DataFrame,
    shown: pd.DataFrame,
    x: Callable[[pd.DataFrame], np.ndarray],
    xcol: str,
    band: bool = False,
) -> tuple[Figure, np.ndarray, list[float], list[tuple[object, list[Mark]]]]:
    """One panel per arch: the series lines of its `rows` against `x` (`series_lines`), its
    unpruned reference (± std band when `band`) and chance, titled by `panel_title(…, shown)`.
    Returns the figure, the axes, the accuracies drawn (for `finish_accuracy_panels`) and each
    panel's marks (for `save_spread`)."""
    fig, axes = arch_panels(data)
    values, panels = accuracy_values(rows), []
    for ax, arch in zip(axes, data.archs, strict=True):
        marks = series_lines(ax, data, rows[rows["arch"] == arch], x, xcol)
        values += reference_lines(ax, data, arch, band=band)
        values.append(chance_line(ax, data))
        ax.set_title(panel_title(data, arch, shown))
        panels.append((ax, marks))
    return fig, axes, values, panels


def finish_accuracy_panels(fig, axes, values: Iterable[float], data: GridData) -> None:
    """The shared y range (`accuracy_limits`), the accuracy label on the first panel and the
    figure's legend."""
    accuracy_limits(axes, values)
    axes[0].set_ylabel("val accuracy (%)")
    legend(fig, axes, data)


def save_spread(fig, panels: list[tuple[object, list[Mark]]], out_dir, name: str) -> list[Path]:
    """Spread each panel's overlapping marks (last: it needs the final limits) and save."""
    for ax, marks in panels:
        spread_marks(fig, ax, marks)
    return style.save(fig, out_dir, name)


def pct(values: object) -> np.ndarray:
    """Fractions → percent, NaN stays NaN (std of one seed draws no error bar)."""
    return np.asarray(values, dtype=float) * 100.0


# ---- series -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Look:
    """How one series is drawn."""

    label: str
    color: str
    marker: str
    filled: bool
    size: float

    @property
    def linestyle(self) -> str:
        return "-" if self.filled else "--"

    def marker_kwargs(self) -> dict:
        return {
            "marker": self.marker,
            "markersize": self.size,
            "markeredgecolor": self.color,
            "markerfacecolor": self.color if self.filled else "white",
            "markeredgewidth": 1.2 if self.filled else 1.6,
        }


SeriesKey = tuple[str, str, str]  # (method, protocol, variant)


def series_keys(data: GridData, rows: pd.DataFrame) -> list[SeriesKey]:
    """The (method, protocol, variant) series of `rows` in display order: method order, then
    protocol order, then variant name (the plain config first)."""
    if rows.empty:
        return []
    keys = {
        (str(m), str(p), str(v or ""))
        for m, p, v in rows[["method", "protocol", "variant"]].itertuples(index=False)
    }
    proto = {p: i for i, p in enumerate(PROTOCOL_ORDER)}
    return sorted(
        keys,
        key=lambda k: (data.labels.order("method", k[0]), proto.get(k[1], 99), k[2] != "", k[2]),
    )


def series_rows(rows: pd.DataFrame, key: SeriesKey) -> pd.DataFrame:
    method, protocol, variant = key
    return rows[
        (rows["method"] == method)
        & (rows["protocol"] == protocol)
        & (rows["variant"].fillna("") == variant)
    ]


def look(data: GridData, key: SeriesKey) -> Look:
    """The look of a series (see the module docstring and analysis.palette.series_style)."""
    method, protocol, variant = key
    variants = sorted(set(data.agg["variant"].fillna(""))) if "variant" in data.agg else []
    reference = data.labels.is_reference(method)
    drawn = series_style(method, protocol, variant, is_reference=reference, variants=variants)
    label = data.labels.series(method, variant)
    if reference and _protocols(data):  # the base and the fine-tuned unpruned model differ
        label = f"{label} ({protocol_label(protocol)})"
    return Look(label, drawn.color, drawn.marker, drawn.filled, 10.0 if reference else 6.5)


def draw_point(
    ax, x, y, yerr, lk: Look, xerr=None, line: bool = False, legend: bool = True
) -> Mark:
    """Points (a line when `line`) with error bars in the series' look, in the legend unless
    told not; returns the mark to spread. Larger markers sit below smaller ones, so a star never
    covers a circle."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    container = ax.errorbar(
        x,
        y,
        yerr=_bars(yerr),
        xerr=_bars(xerr),
        color=lk.color,
        linestyle=lk.linestyle if line else "none",
        linewidth=1.4,
        ecolor=lk.color,
        elinewidth=1.0,
        zorder=3 + 1.0 / lk.size,
        label=lk.label if legend else "_" + lk.label,
        **lk.marker_kwargs(),
    )
    return Mark(errorbar_artists(container), np.column_stack([x, y]), lk.size)


def _bars(err) -> np.ndarray | None:
    if err is None:
        return None
    err = np.asarray(err, dtype=float)
    return None if not np.isfinite(err).any() else np.nan_to_num(err, nan=0.0)


def series_lines(
    ax,
    data: GridData,
    rows: pd.DataFrame,
    x: Callable[[pd.DataFrame], np.ndarray],
    sort_by: str,
) -> list[Mark]:
    """One accuracy line with seed error bars per series of `rows`, in display order."""
    marks = []
    for key in series_keys(data, rows):
        part = series_rows(rows, key).sort_values(sort_by)
        lk = look(data, key)
        xs, ys = x(part), pct(part["accuracy_mean"])
        marks.append(draw_point(ax, xs, ys, pct(part["accuracy_std"]), lk, line=True))
        seed_counts(ax, xs, ys, part)
    return marks


def seed_counts(ax, x: Iterable[float], y: Iterable[float], rows: pd.DataFrame) -> None:
    """Label the points whose group has seeds not done with 'done/planned'."""
    for xi, yi, (_, r) in zip(x, y, rows.iterrows(), strict=True):
        if 0 < r["n"] < r["n_planned"] and np.isfinite(yi):
            ax.annotate(
                f"{int(r['n'])}/{int(r['n_planned'])}",
                (xi, yi),
                xytext=(5, -9),
                textcoords="offset points",
                fontsize=6.5,
                color="#444444",
                zorder=7,
            )


# ---- reference lines and axes -------------------------------------------------------------------


def reference_lines(ax, data: GridData, arch: str, band: bool = False) -> list[float]:
    """The unpruned accuracy of `arch` per protocol as horizontal lines (fine-tuned dashed, the
    base dash-dotted; ± std band when asked); returns the values drawn (percent)."""
    drawn = []
    for _, ref in data.references(arch).iterrows():
        mean, std = ref["accuracy_mean"] * 100, ref["accuracy_std"] * 100
        base = ref["protocol"] == "base"
        label = "unpruned" + (f" ({protocol_label(ref['protocol'])})" if _protocols(data) else "")
        ax.axhline(
            mean,
            color="black",
            linestyle="-." if base else "--",
            linewidth=1.0,
            label=label,
            zorder=1.5,
        )
        if band and np.isfinite(std):
            ax.axhspan(mean - std, mean + std, color="black", alpha=0.06, linewidth=0)
        drawn.append(mean)
    return drawn


def chance_line(ax, data: GridData) -> float:
    """Chance accuracy as a dotted line (every accuracy axis has one); returns it (percent)."""
    chance = data.chance * 100
    if np.isfinite(chance):
        ax.axhline(chance, color=CHANCE_COLOR, linestyle=":", linewidth=1.2, label="chance")
    return chance


def accuracy_limits(axes, values: Iterable[float], min_span: float = MIN_ACCURACY_SPAN) -> None:
    """One y range for the accuracy axes (percent): every value shown (means ± std, reference,
    chance) with a margin, at least `min_span` wide (equal accuracies never read as
    −0.05…0.05), within [0, 100] plus the margin."""
    v = np.asarray([x for x in values if x is not None], dtype=float)
    v = v[np.isfinite(v)]
    lo, hi = (float(v.min()), float(v.max())) if len(v) else (0.0, 100.0)
    if hi - lo < min_span:
        mid = (hi + lo) / 2
        lo, hi = mid - min_span / 2, mid + min_span / 2
    pad = 0.08 * (hi - lo)
    lo, hi = max(lo - pad, -pad / 2), min(hi + pad, 100 + pad)
    for ax in np.atleast_1d(axes):
        ax.set_ylim(lo, hi)


def accuracy_values(rows: pd.DataFrame) -> list[float]:
    """Means ± std (percent) of the groups in `rows`, for `accuracy_limits`."""
    mean = pct(rows["accuracy_mean"])
    std = np.nan_to_num(pct(rows["accuracy_std"]), nan=0.0)
    return [*(mean - std), *(mean + std)]


def pad_limits(ax, axis: str, values: np.ndarray, rel: float = 0.12, right: float = 1.0) -> None:
    """Axis limits around `values` with a margin (`right` × margin on the high side); a single
    value gets ±12 % of itself, never a ±0.05 window."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if not len(v):
        return
    lo, hi = float(v.min()), float(v.max())
    pad = rel * (hi - lo or abs(hi) or 1.0)
    (ax.set_xlim if axis == "x" else ax.set_ylim)(lo - pad, hi + right * pad)


def spread_marks(fig, ax, marks: list[Mark]) -> None:
    """Shift overlapping marks sideways (widening the x range when a shifted mark would leave the
    axes) and say so in the caption."""
    shift = spread(fig, ax, marks)
    for _ in range(4):  # a wider range changes the scale, hence the spread: redo until it fits
        if not (shift > 0 and _widen_for_shifts(fig, ax, marks)):
            break
        for mark in marks:
            for artist in mark.artists:
                artist.set_transform(ax.transData)
        shift = spread(fig, ax, marks)
    if shift > 0:
        style.note(
            fig,
            f"points that would overlap are drawn side by side (shifted by up to {shift:.0f} pt; "
            "values unchanged)",
        )


def _widen_for_shifts(fig, ax, marks: list[Mark]) -> bool:
    """Widen the x limits so every shifted marker stays inside the axes; True when widened."""
    px = fig.dpi / 72.0
    box = ax.get_window_extent()
    xs = [
        ax.transData.transform(m.xy)[:, 0] + m.shift * px + sign * (m.size / 2 + 2) * px
        for m in marks
        if len(m.xy)
        for sign in (-1, 1)
    ]
    if not xs:
        return False
    lo, hi = min(x.min() for x in xs), max(x.max() for x in xs)
    if lo >= box.x0 - 0.5 and hi <= box.x1 + 0.5:
        return False
    inverse = ax.transData.inverted()
    (new_lo, _), (new_hi, _) = inverse.transform([(min(lo, box.x0), 0), (max(hi, box.x1), 0)])
    ax.set_xlim(new_lo, new_hi)
    return True


# ---- legend, captions, titles -------------------------------------------------------------------


def _protocols(data: GridData) -> list[str]:
    """The grid's protocols when it runs the protocol (base / fine-tune / zero-shot), else []."""
    present = set(data.agg["protocol"].dropna()) if "protocol" in data.agg else set()
    return [p for p in PROTOCOL_ORDER if p in present] if present - {"scratch"} else []


def legend(fig, axes, data: GridData, extra: dict[str, object] | None = None) -> None:
    """One legend below all panels: each label once (plus `extra` handles), then what filled
    and hollow mean."""
    seen: dict[str, object] = dict(extra or {})
    for ax in np.atleast_1d(axes):
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if not label.startswith("_"):
                seen.setdefault(label, handle)
    protocols = _protocols(data)
    if any(protocol_fill(p) for p in protocols) and any(not protocol_fill(p) for p in protocols):
        seen["fine-tuned (filled)"] = _proxy(True)
        seen["base weights (hollow)"] = _proxy(False)
    labels = list(seen)
    if fig.get_figwidth() < 6.0:  # one panel: a column on the right, the figure widened for it
        width = 0.55 + 0.065 * max(len(label) for label in labels)
        fig.set_figwidth(fig.get_figwidth() + width)
        fig.legend(list(seen.values()), labels, loc="outside right center", ncol=1)
        return
    fig.legend(
        list(seen.values()),
        labels,
        loc="outside lower center",
        ncol=style.legend_columns(fig, labels),
    )


def _proxy(filled: bool) -> Line2D:
    return Line2D(
        [],
        [],
        linestyle="none",
        marker="o",
        markersize=6.5,
        markeredgecolor="#333333",
        markerfacecolor="#333333" if filled else "white",
    )


def encoding_note(data: GridData, rows: pd.DataFrame) -> str:
    """The caption's sentence on how to read markers and error bars for the groups drawn."""
    parts = ["colour and marker: method"]
    if "variant" in rows and rows["variant"].fillna("").astype(bool).any():
        parts[0] += " (a variant: its own marker in its method's colour)"
    if _protocols(data):
        parts.append(
            "filled: fine-tuned; hollow: the unpruned base's weights (the base itself, dash-dotted, "
            "and methods evaluated zero-shot on it)"
        )
    n = rows["n"].dropna().astype(int) if "n" in rows else pd.Series(dtype=int)
    if len(n) and n.max() >= 2:
        seeds = f"{n.min()}–{n.max()}" if n.min() != n.max() else str(n.max())
        parts.append(f"error bars: std over {seeds} seeds (mean shown)")
    elif len(n):
        parts.append("one seed per group: no error bars")
    if ((rows["n"] > 0) & (rows["n"] < rows["n_planned"])).any():
        parts.append("'2/3' beside a point: seeds done / planned")
    return "; ".join(parts)


def panel_title(data: GridData, arch: str, groups: pd.DataFrame, limit: int = 2) -> str:
    """The arch's label, plus a line naming its groups in `groups` with no done seed (so an
    absent point reads as e.g. 'STTS r0.5·l1: failed', not as forgotten)."""
    labels = data.labels
    bad = groups[(groups["arch"] == arch) & (groups["n"] == 0)]
    items = [
        labels.series(g["method"], g.get("variant", ""))
        + ("" if labels.is_reference(g["method"]) else f" r{g['ratio']:g}·l{int(g['layer'])}")
        + (f" {protocol_label(g['protocol'])}" if _protocols(data) else "")
        + f": {g['state']}"
        for _, g in bad.iterrows()
    ]
    if len(items) > limit:
        items = items[:limit] + [f"+{len(items) - limit} more not done"]
    return labels.label("arch", arch) + ("\n(" + "; ".join(items) + ")" if items else "")
