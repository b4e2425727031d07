"""CLI: `python -m core.data.synthetic --root DIR --train N --val M --seed S [...]`."""

from __future__ import annotations

import argparse
import json
import sys
import time

from core.data.synthetic.benchmark import benchmark_checksum, dry_run, ensure_synthetic
from core.data.synthetic.checksum import CHECKSUM_FILE, decoded_content_checksum
from core.data.synthetic.stats import stats_markdown
from core.data.synthetic.vocab import QUESTION_TYPES


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m core.data.synthetic",
        description="Generate the synthetic video-QA benchmark.",
    )
    p.add_argument("--root", required=True, help="data root (DataConfig.data_root)")
    p.add_argument("--train", type=int, default=3000, help="training clips")
    p.add_argument("--val", type=int, default=500, help="validation clips")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default="synthetic", help="dataset name (DataConfig.dataset_name)")
    p.add_argument("--size", type=int, default=64, help="frame width = height in pixels")
    p.add_argument("--fps", type=int, default=8)
    p.add_argument("--duration", type=float, default=4.0, help="clip length in seconds")
    p.add_argument(
        "--question-types",
        default=None,
        help=f"comma-separated subset of {','.join(QUESTION_TYPES)} (default: all)",
    )
    p.add_argument("--workers", type=int, default=1, help="encoding processes")
    p.add_argument("--force", action="store_true", help="replace data made with other arguments")
    p.add_argument("--dry-run", action="store_true", help="print stats only; write nothing")
    p.add_argument(
        "--verify",
        action="store_true",
        help="also decode every clip and check the content checksum recorded in the marker",
    )
    a = p.parse_args(argv)
    types = None if a.question_types is None else [t.strip() for t in a.question_types.split(",")]
    common = dict(size=a.size, fps=a.fps, duration=a.duration, question_types=types)
    try:
        if a.dry_run:
            stats = dry_run(a.train, a.val, a.seed, a.name, **common)
            print(json.dumps(stats, indent=1))
            return 0
        start = time.perf_counter()
        root = ensure_synthetic(
            a.root, a.train, a.val, a.seed, a.name, workers=a.workers, force=a.force, **common
        )
    except (ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - start
    stats = json.loads((root / "raw" / a.name / "stats.json").read_text(encoding="utf-8"))
    split = "validation" if a.val else "train"
    print(stats_markdown(stats, split))
    recorded = benchmark_checksum(root, a.name)
    print(f"content checksum {recorded}")
    if a.verify:
        dataset_dir = root / "raw" / a.name
        decoded = decoded_content_checksum(root, dataset_dir / CHECKSUM_FILE)
        if decoded != recorded:
            print(f"error: decoded content checksum {decoded} != recorded", file=sys.stderr)
            return 1
        print("verified: the decoded clips and metadata give the recorded content checksum")
    print(f"benchmark ready at {root} ({seconds:.1f} s, stats in raw/{a.name}/stats.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
