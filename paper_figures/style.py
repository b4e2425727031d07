"""One look for every figure: fonts, a fixed colour and marker per method key, saving.

Labels and order come from the data (analysis.display), never from here. Figures are built with the
object-oriented API on the Agg canvas (no pyplot state), and saved as PDF (TrueType fonts embedded)
and PNG side by side.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import matplotlib as mpl
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from analysis.palette import METHOD_STYLES, MethodStyle, method_style

__all__ = ["METHOD_STYLES", "MethodStyle", "method_style"]


RC = {
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9.5,
    "xtick.labelsize": 8.5,
    "ytick.labelsize": 8.5,
    "legend.fontsize": 8.5,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "lines.linewidth": 1.6,
    "lines.markersize": 6,
    "errorbar.capsize": 2.5,
    "pdf.fonttype": 42,
    "hatch.linewidth": 0.8,
}


@contextmanager
def paper_style() -> Iterator[None]:
    """rcParams of the paper figures, restored afterwards."""
    with mpl.rc_context(RC):
        yield


def new_figure(width: float, height: float) -> Figure:
    """A Figure on the Agg canvas (inches), with constrained layout."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def legend_columns(fig: Figure, entries: int) -> int:
    """Columns for a figure-wide legend: as many as fit the figure's width (about 1.15 in each),
    so a one-panel figure wraps its legend instead of cutting it off at the edges."""
    return max(1, min(entries, 7, int(fig.get_figwidth() / 1.15)))


def figure_legend(fig: Figure, axes) -> None:
    """One legend below all panels: each label once (first handle wins), wrapped to the width."""
    seen: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(label, handle)
    fig.legend(
        list(seen.values()),
        list(seen),
        loc="outside lower center",
        ncol=legend_columns(fig, len(seen)),
    )


def set_title(fig: Figure, *parts: str) -> None:
    """Figure title from parts (first = headline), wrapped to the figure width so it never spills."""
    width_chars = max(30, int(fig.get_figwidth() * 12))
    lines = [line for part in parts if part for line in textwrap.wrap(part, width_chars)]
    fig.suptitle("\n".join(lines), fontsize=10)


def save(fig: Figure, out_dir: str | Path, stem: str, dpi: int = 200) -> list[Path]:
    """Write stem.pdf and stem.png into out_dir; returns both paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}.pdf", out_dir / f"{stem}.png"]
    for path in paths:
        fig.savefig(path, dpi=dpi)
    return paths
