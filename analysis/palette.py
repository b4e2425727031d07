"""One colour and marker per method key, shared by the paper figures and the HTML report's plots.

Colours are Okabe–Ito (colour-blind safe) for the methods the paper shows; any other key gets a
stable colour and marker from its hash, so a new reducer is drawn the same way in every grid.
Markers are matplotlib codes; the HTML report draws the same shapes in SVG. The protocol is never
a colour: filled = trained (fine-tuned or from scratch), hollow = zero-shot, and the unpruned base
is the reference star, hollow like everything evaluated on its weights (see `protocol_fill`). A variant keeps its method's colour and gets a marker
of its own (`variant_marker`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass(frozen=True)
class MethodStyle:
    color: str
    marker: str


METHOD_STYLES = {
    "none": MethodStyle("#000000", "*"),
    "random": MethodStyle("#7f7f7f", "v"),
    "easy": MethodStyle("#E69F00", "s"),
    "heuristic": MethodStyle("#CC79A7", "D"),
    "scorer": MethodStyle("#0072B2", "o"),
    "oracle": MethodStyle("#009E73", "^"),
}
FALLBACK_COLORS = ("#D55E00", "#56B4E9", "#8C564B", "#BCBD22", "#17BECF", "#9467BD")
FALLBACK_MARKERS = ("P", "X", "h", "p", "<", ">")
# markers of named variants, in the order a grid's variants are sorted (never the method markers)
VARIANT_MARKERS = ("P", "X", "h", "p", "<", ">", "d", "8")
REFERENCE_MARKER = "*"
# protocols whose points are drawn hollow: the unpruned base's weights (the base itself, and the
# methods evaluated zero-shot on it), never trained with pruning
HOLLOW_PROTOCOLS = ("base", "zeroshot")


def _hash(text: str) -> int:
    return int(hashlib.sha1(text.encode()).hexdigest(), 16)


def method_style(method: str) -> MethodStyle:
    """The fixed style of a method key; other keys get a stable colour/marker from their hash."""
    if method in METHOD_STYLES:
        return METHOD_STYLES[method]
    h = _hash(str(method))
    return MethodStyle(
        FALLBACK_COLORS[h % len(FALLBACK_COLORS)], FALLBACK_MARKERS[h % len(FALLBACK_MARKERS)]
    )


def variant_marker(variant: str, variants: list[str] | tuple[str, ...] = ()) -> str | None:
    """The marker of a named variant (None for the plain config ""): its position among the
    grid's `variants` when given (distinct within a figure), else a stable hash."""
    if not variant:
        return None
    named = sorted({v for v in variants if v})
    index = named.index(variant) if variant in named else _hash(variant)
    return VARIANT_MARKERS[index % len(VARIANT_MARKERS)]


def protocol_fill(protocol: str) -> bool:
    """Filled markers for weights trained with the cell's own config (fine-tuned, from scratch),
    hollow for the base's weights (the base, zero-shot)."""
    return protocol not in HOLLOW_PROTOCOLS


@dataclass(frozen=True)
class SeriesStyle:
    """How a (method, protocol, variant) series is drawn, in figures and in the report."""

    color: str
    marker: str
    filled: bool
    reference: bool


def series_style(
    method: str,
    protocol: str,
    variant: str = "",
    *,
    is_reference: bool = False,
    variants: list[str] | tuple[str, ...] = (),
) -> SeriesStyle:
    """The method's colour; the variant's marker, else the reference star or the method's
    marker; filled unless the weights are the base's (`protocol_fill`)."""
    base = method_style(method)
    marker = variant_marker(variant, variants) or (
        REFERENCE_MARKER if is_reference else base.marker
    )
    return SeriesStyle(base.color, marker, protocol_fill(protocol), is_reference)
