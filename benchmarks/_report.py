"""What the benchmark scripts share about their report file: a smoke run's output never replaces
the committed results, and a report is written (with its folder) and printed."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path


def add_report_options(parser: argparse.ArgumentParser, results: Path, smoke_help: str) -> None:
    """`--out` (default: the committed `results`) and `--smoke` (`smoke_help`: what it shrinks)."""
    parser.add_argument("--out", type=Path, default=results)
    parser.add_argument("--smoke", action="store_true", help=smoke_help)


def smoke_out(out: Path, results: Path, name: str) -> Path:
    """Where a smoke run writes: `out`, or a fresh temp file `name` when `out` is still the
    committed `results` (a smoke run's numbers are not results)."""
    return Path(tempfile.mkdtemp()) / name if out == results else out


def write_report(out: Path, text: str) -> Path:
    """Write `text` to `out` (creating its folder), print it, and return `out`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    return out
