"""How tables and figures name and order methods and archs: read from the cells' own `display`
blocks (result.json, written by the cell from each extension's metadata), never from a name table.

Each field of `display.<axis>` becomes a column `<axis>_<field>` (`method_label`, `arch_order`).
`resolve_display` gives every row of a method or arch the values found on any row with the same
key (a failed or new cell has no result, but its method is labelled like the others). Keys no
result describes (trees written before display blocks existed) fall back to label = short = key,
no order (sorted alphabetically after the ordered ones), not ground truth, and as reference the
method whose every cell prunes nothing (ratio 0).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from core.results import DISPLAY_FIELDS

COLUMNS = {
    axis: {name: f"{axis}_{name}" for name in fields if name != "key"}
    for axis, fields in DISPLAY_FIELDS.items()
}
DISPLAY_COLUMNS = tuple(col for cols in COLUMNS.values() for col in cols.values())
# The protocol axis is not an extension, so it is named here, once, for tables, figures and report.
PROTOCOL_LABELS = {
    "base": "base",
    "finetune": "fine-tuned",
    "zeroshot": "zero-shot",
    "scratch": "from scratch",
}
PROTOCOL_ORDER = tuple(PROTOCOL_LABELS)
_FLAGS = ("method_is_reference", "method_uses_ground_truth", "method_trained")


def display_columns(display: Any) -> dict[str, Any]:
    """The columns of one result's `display` block ({} when it has none)."""
    out: dict[str, Any] = {}
    if not isinstance(display, dict):
        return out
    for axis, cols in COLUMNS.items():
        block = display.get(axis)
        if isinstance(block, dict):
            out.update({col: block.get(name) for name, col in cols.items()})
    return out


def resolve_display(cells: pd.DataFrame, messages: list[str] | None = None) -> pd.DataFrame:
    """`cells` with every display column filled per key (see the module docstring); notes on
    fallbacks and disagreeing labels go to `messages`."""
    out = cells.copy()
    for col in DISPLAY_COLUMNS:
        if col not in out:
            out[col] = pd.Series([None] * len(out), index=out.index, dtype=object)
    notes = [] if messages is None else messages
    for axis, cols in COLUMNS.items():
        if axis not in out:
            continue
        undescribed = []
        for key, rows in out.groupby(axis, sort=True).groups.items():
            part = out.loc[rows]
            if part[list(cols.values())].isna().all().all():
                undescribed.append(str(key))
            for col in cols.values():
                known = part[col].dropna()
                values = sorted(set(map(str, known)))
                if len(values) > 1:
                    notes.append(
                        f"{axis} {key!r}: cells disagree on {col} ({', '.join(values)}); "
                        f"using {known.iloc[0]!r}"
                    )
                if len(known):
                    out.loc[rows, col] = known.iloc[0]
            _fallbacks(out, rows, axis, str(key))
        if undescribed:
            notes.append(
                f"no display metadata for {axis} {', '.join(undescribed)} (results written before "
                "display blocks): labels are the keys"
                + ("; the reference is the method with ratio 0 only" if axis == "method" else "")
            )
    for col in _FLAGS:
        out[col] = [v is not None and v == v and bool(v) for v in out[col]]  # None/NaN → False
    return out


def _fallbacks(out: pd.DataFrame, rows: Any, axis: str, key: str) -> None:
    for name in ("label", "short"):
        col = f"{axis}_{name}"
        out.loc[rows, col] = [key if v is None or v != v else v for v in out.loc[rows, col]]
    if axis == "method" and out.loc[rows, "method_is_reference"].isna().all():
        ratios = pd.to_numeric(out.loc[rows].get("ratio"), errors="coerce")
        out.loc[rows, "method_is_reference"] = bool(len(ratios) and (ratios == 0).all())


def protocol_label(protocol: object) -> str:
    """'fine-tuned', 'zero-shot', ...: the protocol's name in tables, figures and the report."""
    return PROTOCOL_LABELS.get(str(protocol), str(protocol))


@dataclass(frozen=True)
class Labels:
    """Label, order and flags per method/arch key, read from a frame with display columns."""

    table: dict[tuple[str, str], dict[str, Any]]

    @classmethod
    def of(cls, frame: pd.DataFrame) -> Labels:
        if not set(DISPLAY_COLUMNS) <= set(frame.columns):
            frame = resolve_display(frame)
        table: dict[tuple[str, str], dict[str, Any]] = {}
        for axis, cols in COLUMNS.items():
            if axis not in frame or frame.empty:
                continue
            first = frame.drop_duplicates(axis).set_index(axis)
            for key, row in first.iterrows():
                table[(axis, str(key))] = {name: row[col] for name, col in cols.items()}
        return cls(table)

    def _get(self, axis: str, key: object, name: str) -> Any:
        return self.table.get((axis, str(key)), {}).get(name)

    def label(self, axis: str, key: object) -> str:
        value = self._get(axis, key, "label")
        return str(key) if value is None or value != value else str(value)

    def order(self, axis: str, key: object) -> tuple[int, float, str]:
        """Sort key: ordered keys by their order, then the rest alphabetically."""
        value = self._get(axis, key, "order")
        known = isinstance(value, int | float) and not math.isnan(value)
        return (0, float(value), str(key)) if known else (1, 0.0, str(key))

    def sort(self, axis: str, keys: Iterable[object]) -> list[Any]:
        return sorted(dict.fromkeys(keys), key=lambda k: self.order(axis, k))

    def series(self, method: object, variant: object = "") -> str:
        """A method's label, with its variant's name when it has one: 'STTS (no_aux)'."""
        label = self.label("method", method)
        return f"{label} ({variant})" if isinstance(variant, str) and variant else label

    def is_reference(self, method: object) -> bool:
        return bool(self._get("method", method, "is_reference"))

    def uses_ground_truth(self, method: object) -> bool:
        return bool(self._get("method", method, "uses_ground_truth"))

    def trained(self, method: object) -> bool:
        return bool(self._get("method", method, "trained"))
