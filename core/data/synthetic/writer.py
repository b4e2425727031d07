"""On-disk layout of the benchmark (WebVid-style videos, caption CSVs, QA JSONL, ground truth)
and the writers for each file."""

from __future__ import annotations

import csv
import json
from fractions import Fraction
from pathlib import Path

import numpy as np

CSV_SPLIT = {"train": "train", "validation": "val"}
SPLITS: tuple[str, ...] = ("train", "validation")
CODEC = "libx264rgb"  # H.264 on RGB planes: with qp 0 every decoder returns the input pixels
GOP = 8


def video_relpath(split: str, clip_id: str) -> str:
    """Video path relative to root: nested by id prefix for train, flat for validation."""
    if split == "train":
        return f"raw/videos/train/{clip_id[:2]}/{clip_id[:4]}/{clip_id[:6]}/{clip_id}.mp4"
    return f"raw/videos/validation/{clip_id}.mp4"


def gt_relpath(name: str, split: str, clip_id: str) -> str:
    return f"raw/{name}/ground_truth/{split}/{clip_id}.json"


def manifest_path(root: Path, name: str, split: str) -> Path:
    return root / "raw" / name / "qa" / f"{split}.jsonl"


def caption_csv_path(root: Path, name: str, split: str) -> Path:
    return root / "raw" / name / "data" / CSV_SPLIT[split] / "partitions" / "part-0000.csv"


def write_mp4(path: Path, frames: np.ndarray, fps: int) -> None:
    """Lossless H.264 (libx264rgb, qp 0, rgb24 in, closed GOP of 8, no B-frames) so decoders can
    seek and every conforming decoder returns exactly `frames` (core.data.decode reads them back as
    rgb24 at the clip's own size, which is a plane reordering, no resampling)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(CODEC, rate=fps)
        stream.width = frames.shape[2]
        stream.height = frames.shape[1]
        stream.pix_fmt = "rgb24"
        stream.codec_context.thread_count = 1
        stream.options = {
            "qp": "0",
            "preset": "veryfast",
            "x264-params": f"keyint={GOP}:min-keyint={GOP}:scenecut=0:bframes=0",
        }
        time_base = Fraction(1, fps)
        for i, frame in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            vf.pts = i
            vf.time_base = time_base
            for packet in stream.encode(vf):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def read_mp4(path: Path) -> np.ndarray:
    """Every frame of a clip as uint8 (F, H, W, 3) RGB, at the clip's own size.

    libx264rgb streams decode to planar gbrp (planes G, B, R): those planes are stacked directly,
    which is exact and avoids a colour conversion per frame; other formats go through rgb24."""
    import av

    def rgb(frame) -> np.ndarray:
        if frame.format.name != "gbrp":
            return frame.to_ndarray(format="rgb24")
        g, b, r = (
            np.frombuffer(plane, np.uint8).reshape(frame.height, -1)[:, : frame.width]
            for plane in frame.planes
        )
        return np.stack([r, g, b], axis=-1)

    with av.open(str(path)) as container:
        return np.stack([rgb(f) for f in container.decode(video=0)])


def dumps(obj) -> str:
    """Canonical compact JSON (fixed key order as built, no whitespace) for byte-stable files."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=True)


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps(obj) + "\n", encoding="utf-8")


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(dumps(row) + "\n")


def write_captions(path: Path, rows: list[dict], duration: float) -> None:
    """WebVid-style CSV: videoid, name (the caption), duration (seconds)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["videoid", "name", "duration"])
        for row in rows:
            writer.writerow([row["clip_id"], row["caption"], f"{duration:g}"])
