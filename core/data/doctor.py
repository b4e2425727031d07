"""Dataset doctor: scan every clip of a manifest and report what would go wrong in training.

    python -m core.data.doctor --data-root DIR --dataset-type T [--dataset-name N] [--split S]
        [--min-frames K] [--json out.json]

Each distinct video is classified as ok / missing / empty / undecodable / no_video_stream /
too_short (fewer than min_frames decodable frames), with a few example paths per category. A bad
clip never stops the scan; the exit code is 0 whenever a report is produced and 2 when the
manifest itself cannot be read.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.config.data import DataConfig
from core.data.decode import ClipError, open_video

CATEGORIES = ("ok", "missing", "empty", "undecodable", "no_video_stream", "too_short")
EXAMPLES_PER_CATEGORY = 3


def check_clip(path: str | Path, min_frames: int) -> tuple[str, str]:
    """(category, detail) for one clip; decodes at most `min_frames` frames."""
    try:
        container, stream = open_video(path)
    except ClipError as exc:
        return exc.reason, str(exc)
    decoded, error = 0, ""
    try:
        for _ in container.decode(stream):
            decoded += 1
            if decoded >= min_frames:
                break
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    finally:
        container.close()
    if decoded == 0:
        return "undecodable", f"{path}: no frame decodes ({error or 'empty stream'})"
    if decoded < min_frames:
        return "too_short", f"{path}: {decoded} decodable frame(s) < min_frames={min_frames}"
    return "ok", str(path)


def scan(cfg: Any, split: str, min_frames: int) -> dict[str, Any]:
    """Report for every distinct video of `split` (the manifest errors propagate)."""
    from core.data.datasets import dataset_class

    records = dataset_class(cfg).load_records(cfg, split)
    videos = list(dict.fromkeys(str(r.video) for r in records))
    counts = dict.fromkeys(CATEGORIES, 0)
    examples: dict[str, list[str]] = {c: [] for c in CATEGORIES}
    for video in videos:
        category, detail = check_clip(video, min_frames)
        counts[category] += 1
        if category != "ok" and len(examples[category]) < EXAMPLES_PER_CATEGORY:
            examples[category].append(detail)
    return {
        "data_root": str(cfg.data_root),
        "dataset_type": cfg.dataset_type,
        "dataset_name": cfg.dataset_name,
        "split": split,
        "min_frames": min_frames,
        "rows": len(records),
        "clips": len(videos),
        "counts": counts,
        "examples": {c: e for c, e in examples.items() if e},
    }


def format_report(report: dict[str, Any]) -> str:
    lines = [
        f"dataset {report['dataset_type']}:{report['dataset_name']} split={report['split']} "
        f"root={report['data_root']}: {report['clips']} clips in {report['rows']} rows",
    ]
    for category in CATEGORIES:
        lines.append(f"  {category:<16} {report['counts'][category]}")
    for category, items in report["examples"].items():
        lines.append(f"  e.g. {category}:")
        lines.extend(f"    {item}" for item in items)
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.data.doctor", description=__doc__)
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--dataset-type", required=True)
    parser.add_argument("--dataset-name", default="synthetic")
    parser.add_argument("--split", default="train", choices=("train", "validation"))
    parser.add_argument("--manifest", default="")
    parser.add_argument(
        "--min-frames",
        type=int,
        default=DataConfig().min_frames,
        help="fewer decodable frames make a clip too_short (default: training's data.min_frames)",
    )
    parser.add_argument("--json", default="", help="also write the report here as JSON")
    args = parser.parse_args(argv)

    try:
        min_frames = max(args.min_frames, 1)
        cfg = DataConfig(
            data_root=args.data_root,
            dataset_type=args.dataset_type,
            dataset_name=args.dataset_name,
            manifest=args.manifest,
            min_frames=min_frames,
            max_frames=max(min_frames, 8),
            generate_synthetic=False,
            cache_frames=False,
        )
        report = scan(cfg, args.split, min_frames)
    except (OSError, ValueError) as exc:
        print(f"doctor: cannot read the manifest: {exc}", file=sys.stderr)
        return 2
    print(format_report(report))
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
