"""Seek-based vs sequential decoding of 8 uniformly sampled frames from a 30 s 640×360 H.264 clip.

    python benchmarks/decode_bench.py [--repeats 5] [--frame-size 224] [--out FILE]
    python benchmarks/decode_bench.py --smoke     # a 2 s 64×36 clip, 1 repeat, output to a temp file

Writes benchmarks/results/decode.md (numbers plus the machine) and prints it. Both paths run side
by side in one process on one thread (torch and the FFmpeg codec context).
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._report import add_report_options, smoke_out, write_report  # noqa: E402
from core.data.decode import decode_frames  # noqa: E402
from core.data.sampling import ClipTiming, uniform  # noqa: E402
from core.efficiency.hardware import cpu_model  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "decode.md"


@dataclasses.dataclass(frozen=True)
class Clip:
    seconds: int = 30
    fps: int = 30
    width: int = 640
    height: int = 360
    gop: int = 60
    targets: int = 8


SMOKE = Clip(seconds=2, fps=8, width=64, height=36, gop=8, targets=4)


def write_clip(path: Path, clip: Clip) -> Path:
    """A textured clip with motion so the encoder produces realistic P/B frames."""
    import av

    yy, xx = np.mgrid[0 : clip.height, 0 : clip.width].astype(np.float32)
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 40, (clip.height, clip.width, 1), dtype=np.uint8)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=clip.fps)
        stream.width, stream.height, stream.pix_fmt = clip.width, clip.height, "yuv420p"
        stream.codec_context.gop_size = clip.gop
        stream.codec_context.options = {"crf": "23", "preset": "veryfast"}
        for i in range(clip.seconds * clip.fps):
            r = 127 + 100 * np.sin((xx + 4 * i) / 37.0)
            g = 127 + 100 * np.sin((yy - 3 * i) / 23.0)
            b = 127 + 100 * np.sin((xx + yy + 5 * i) / 51.0)
            rgb = np.stack([r, g, b], -1).astype(np.uint8) + texture
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def time_mode(path: Path, times: list[float], size: int, mode: str, repeats: int) -> dict:
    runs, info = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        frames, info = decode_frames(path, times, size, mode=mode, threads=1)
        runs.append(time.perf_counter() - t0)
    med = statistics.median(runs)
    return {
        "mode": mode,
        "median_s": med,
        "clips_s": 1.0 / med,
        "frames_s": len(times) / med,
        "decoded": info.frames_decoded,
        "seeks": info.seeks,
        "frames": frames,
    }


def machine() -> str:
    import av

    return (
        f"{platform.platform()}; CPU: {cpu_model()}; python {platform.python_version()}, "
        f"torch {torch.__version__}, av {av.__version__}"
    )


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--frame-size", type=int, default=224)
    add_report_options(parser, RESULTS, "tiny clip, 1 repeat, temp output")
    args = parser.parse_args(argv)
    clip = SMOKE if args.smoke else Clip()
    if args.smoke:
        args.repeats, args.frame_size = 1, 32
        args.out = smoke_out(args.out, RESULTS, "decode.md")
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        path = write_clip(Path(tmp) / "bench.mp4", clip)
        size_mb = path.stat().st_size / 1e6
        n = clip.targets
        times = uniform(ClipTiming(float(clip.seconds), clip.fps), n / clip.seconds, n, n)
        time_mode(path, times, args.frame_size, "seek", 1)  # warm the file cache
        rows = [
            time_mode(path, times, args.frame_size, mode, args.repeats)
            for mode in ("seek", "sequential", "auto")
        ]
    same = all(np.array_equal(rows[0]["frames"], r["frames"]) for r in rows[1:])
    ratio = rows[1]["median_s"] / rows[0]["median_s"]
    lines = [
        "# Decode benchmark: seek vs sequential",
        "",
        f"Clip: {clip.seconds} s, {clip.width}×{clip.height}, {clip.fps} fps, H.264 (libx264 "
        f"veryfast, crf 23), GOP {clip.gop}, {size_mb:.1f} MB. Targets: {n} uniform timestamps "
        f"(first to last frame), resized to {args.frame_size}². One thread (torch and codec), "
        f"median of {args.repeats} runs after one warm-up, all modes in one process.",
        "",
        "| mode | median s/clip | clips/s | frames/s | frames decoded | seeks |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['mode']} | {r['median_s']:.4f} | {r['clips_s']:.2f} | {r['frames_s']:.1f} | "
            f"{r['decoded']} | {r['seeks']} |"
        )
    lines += [
        "",
        f"Seek speed-up over sequential: **{ratio:.1f}×** (target ≥ 3×). "
        f"Identical output frames across modes: {same}.",
        "",
        f"Machine: {machine()}",
        "",
        "Reproduce: `python benchmarks/decode_bench.py`",
    ]
    text = "\n".join(lines) + "\n"
    return write_report(args.out, text)


if __name__ == "__main__":
    main()
