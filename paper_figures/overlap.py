"""No marker hidden behind another: marks that would overlap on the page are shifted sideways.

A mark is what moves as one: a single point with its error bars, or a whole line of points (a
method's curve). After the layout is final, marks whose markers would touch (in display space, per
axes) form clusters; the marks of a cluster are spread horizontally around the cluster's centre,
keeping their left-to-right order, side by side with a small gap, by a constant offset in points. Only the drawing moves (data values, error bars' lengths and axis limits are unchanged), and
the caption says so with the largest shift.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.transforms import ScaledTranslation


@dataclass
class Mark:
    """Artists drawn at data points `xy` (n, 2) with markers `size` points wide."""

    artists: list = field(default_factory=list)
    xy: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    size: float = 6.0
    shift: float = 0.0  # points, set by spread()

    def __post_init__(self) -> None:
        xy = np.asarray(self.xy, dtype=float).reshape(-1, 2)
        self.xy = xy[np.isfinite(xy).all(axis=1)]


def clusters(points: list[np.ndarray], sizes: list[float], gap: float = 1.0) -> list[list[int]]:
    """Groups of marks (indices) that touch: two marks touch when any of their points lie closer
    than half their summed sizes plus `gap` in both x and y (display units). Transitive."""
    parent = list(range(len(points)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(points)):
        for j in range(i + 1, len(points)):
            if not len(points[i]) or not len(points[j]):
                continue
            reach = (sizes[i] + sizes[j]) / 2 + gap
            d = np.abs(points[i][:, None, :] - points[j][None, :, :])
            if ((d[..., 0] < reach) & (d[..., 1] < reach)).any():
                parent[find(i)] = find(j)
    groups: dict[int, list[int]] = {}
    for i in range(len(points)):
        groups.setdefault(find(i), []).append(i)
    return [g for g in groups.values() if len(g) > 1]


def spread(fig: Figure, ax: Axes, marks: list[Mark], gap: float = 2.0, rounds: int = 50) -> float:
    """Shift the touching marks of `ax` sideways (see the module docstring); returns the largest
    shift in points (0 when nothing overlapped). Call after limits and layout are set.

    Each round spreads every cluster around its current centre, left to right in the marks' true
    x order (ties: the given order); a spread that makes new contacts merges them next round."""
    fig.draw_without_rendering()
    pt = fig.dpi / 72.0
    true = [ax.transData.transform(m.xy) / pt if len(m.xy) else m.xy for m in marks]
    centre = np.array([p[:, 0].mean() if len(p) else 0.0 for p in true])
    sizes = [m.size for m in marks]
    shift = np.zeros(len(marks))
    for _ in range(rounds):
        moved = [p + np.array([shift[i], 0.0]) for i, p in enumerate(true)]
        groups = clusters(moved, sizes, gap)
        if not groups:
            break
        for group in groups:
            group = sorted(group, key=lambda i: (centre[i], i))
            widths = np.array([sizes[i] + gap for i in group])
            offsets = np.cumsum(widths) - widths / 2 - widths.sum() / 2
            middle = float(np.mean([centre[i] + shift[i] for i in group]))
            for i, offset in zip(group, offsets, strict=True):
                shift[i] = middle + offset - centre[i]
    for mark, dx in zip(marks, shift, strict=True):
        mark.shift = float(dx)
        if dx:
            moved_t = ax.transData + ScaledTranslation(dx / 72.0, 0, fig.dpi_scale_trans)
            for artist in mark.artists:
                artist.set_transform(moved_t)
    return float(np.abs(shift).max()) if len(shift) else 0.0


def errorbar_artists(container) -> list:
    """Every artist of an `Axes.errorbar` container (data line, caps, bar lines)."""
    line, caps, bars = container.lines
    return [a for a in (line, *caps, *bars) if a is not None]
