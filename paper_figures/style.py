"""One look for every figure: fonts, a fixed colour and marker per method key (analysis.palette),
titles that can be switched off, captions written beside each figure, saving.

Labels and order come from the data (analysis.display), never from here. Figures are built with the
object-oriented API on the Agg canvas (no pyplot state), and saved as PDF (TrueType fonts embedded)
and PNG side by side.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

import matplotlib as mpl
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from analysis.palette import METHOD_STYLES, MethodStyle, method_style
from analysis.tables import latex_escape

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


def legend_columns(fig: Figure, labels: list[str]) -> int:
    """Columns for a figure-wide legend: as many as fit the figure's width for its longest label
    (a marker and about 0.065 in per character at the legend's size), so it is never cut off."""
    longest = max((len(str(label)) for label in labels), default=1)
    per_column = 0.5 + 0.065 * longest
    return max(1, min(len(labels), 7, int(fig.get_figwidth() / per_column)))


def set_title(fig: Figure, headline: str, *details: str) -> None:
    """The figure's headline (drawn above the panels unless titles are off) and the details that
    go into its caption only (see `save`), so a PNG/PDF never carries a paragraph of text."""
    _caption(fig)[:0] = [headline, *(d for d in details if d)]
    if titles_enabled():
        width_chars = max(30, int(fig.get_figwidth() * 12))
        fig.suptitle("\n".join(textwrap.wrap(headline, width_chars)), fontsize=10)


def note(fig: Figure, text: str) -> None:
    """Append a sentence to the figure's caption (how to read it: markers, bars, shifts)."""
    if text and text not in _caption(fig):
        _caption(fig).append(text)


def caption_text(fig: Figure) -> str:
    """The caption: headline and details as sentences."""
    parts = [p.strip().rstrip(".") for p in _caption(fig) if p and p.strip()]
    # sentences after the headline start upper case; the headline keeps its grid name as written
    parts = parts[:1] + [p[:1].upper() + p[1:] for p in parts[1:]]
    return ". ".join(parts) + ("." if parts else "")


def _caption(fig: Figure) -> list[str]:
    if not hasattr(fig, "_vidprune_caption"):
        fig._vidprune_caption = []  # type: ignore[attr-defined]
    return fig._vidprune_caption  # type: ignore[attr-defined]


def save(fig: Figure, out_dir: str | Path, stem: str, dpi: int = 200) -> list[Path]:
    """Write stem.pdf, stem.png and the caption beside them: stem.caption.txt (plain) and
    stem.caption.tex (LaTeX-escaped, for \\caption{...}); returns the four paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}.pdf", out_dir / f"{stem}.png"]
    for path in paths:
        fig.savefig(path, dpi=dpi)
    text = caption_text(fig)
    captions = [out_dir / f"{stem}{CAPTION_TXT}", out_dir / f"{stem}{CAPTION_TEX}"]
    captions[0].write_text(text + "\n")
    captions[1].write_text(latex_escape(text) + "\n")
    return paths + captions


# ---- options ------------------------------------------------------------------------------------

CAPTION_TXT = ".caption.txt"
CAPTION_TEX = ".caption.tex"
_TITLES: ContextVar[bool] = ContextVar("figure_titles", default=True)


def titles_enabled() -> bool:
    """Whether figures draw their headline (off for a paper: the caption file carries it)."""
    return _TITLES.get()


@contextmanager
def figure_options(titles: bool = True) -> Iterator[None]:
    """Options of the figures drawn inside the block (`--no-titles`: titles=False)."""
    token = _TITLES.set(bool(titles))
    try:
        yield
    finally:
        _TITLES.reset(token)
