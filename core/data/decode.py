"""PyAV decoding of a few timestamps per clip, seeking instead of scanning.

Seek rule ("auto", the default): before each target (taken in time order) we seek iff the stream's
keyframe index holds a keyframe after the frame decoded last and at or before the target; otherwise
we keep decoding forward. Sparse targets (gaps longer than the GOP) therefore cost one seek plus at
most one GOP each, and dense targets (gaps shorter than the GOP) collapse into one sequential pass.
Streams without an index seek when the gap exceeds `NO_INDEX_SEEK_GAP_S`.

A target matches the first frame whose time is ≥ target − half a source frame. Targets past the last
frame by at most one frame interval (e.g. a uniform sample placed exactly at the clip end) take the
last frame; targets further out (truncated clips) stay invalid. Frames are squash-resized to
frame_size² RGB by FFmpeg (`frame.reformat`) and then turned upright using the display-matrix
rotation that PyAV exposes as `frame.rotation` (counter-clockwise degrees).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.data.sampling import ClipTiming

MODES = ("auto", "seek", "sequential")
NO_INDEX_SEEK_GAP_S = 2.0
_MAX_SEEK_RETRIES = 3
# Why a clip could not be used at all; the dataset and the doctor count these.
FAIL_REASONS = ("missing", "empty", "no_video_stream", "undecodable")


class ClipError(Exception):
    """A clip cannot be opened as video; `reason` is one of FAIL_REASONS."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class DecodeInfo:
    """What happened while decoding one clip (times/valid are aligned with the requested targets)."""

    duration: float = 0.0
    source_fps: float = 0.0
    width: int = 0
    height: int = 0
    rotation: int = 0
    times: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    valid: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    seeks: int = 0
    frames_decoded: int = 0
    error: str = ""


def open_video(path: str | Path) -> tuple[Any, Any]:
    """Open `path` and return (container, first video stream); raise ClipError if unusable."""
    import av

    p = Path(path)
    if not p.is_file():
        raise ClipError("missing", f"{p}: no such file")
    if p.stat().st_size == 0:
        raise ClipError("empty", f"{p}: file is empty (0 bytes)")
    try:
        container = av.open(str(p), mode="r")
    except Exception as exc:
        raise ClipError("undecodable", f"{p}: cannot open as a media file ({exc})") from exc
    if not container.streams.video:
        container.close()
        raise ClipError("no_video_stream", f"{p}: has no video stream")
    return container, container.streams.video[0]


def probe_duration(container: Any, stream: Any) -> float:
    """Clip duration in seconds from stream metadata, then the container, then frames/rate; else 0."""
    if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
        return float(stream.duration * stream.time_base)
    if container.duration is not None and container.duration > 0:
        return float(container.duration) / 1e6
    rate = stream.average_rate
    if stream.frames and rate:
        return float(stream.frames / rate)
    return 0.0


def stream_fps(stream: Any) -> float:
    """The stream's frame rate from its metadata, or 0 when it declares none."""
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate and float(rate) > 0:
            return float(rate)
    return 0.0


def _source_fps(stream: Any) -> float:
    return stream_fps(stream) or 25.0


def _keyframe_times(stream: Any, start: int) -> list[float]:
    """Keyframe times (s, from the stream start) from the demuxer index; [] when there is none."""
    try:
        entries = stream.index_entries
        tb = float(stream.time_base)
        return sorted((e.timestamp - start) * tb for e in entries if e.is_keyframe)
    except Exception:
        return []


def _to_rgb(frame: Any, size: int) -> np.ndarray:
    arr = frame.reformat(width=size, height=size, format="rgb24").to_ndarray()
    k = round(getattr(frame, "rotation", 0) / 90) % 4
    return np.ascontiguousarray(np.rot90(arr, k)) if k else arr


class _Reader:
    """Forward frame reader over one stream that can be repositioned with a keyframe seek."""

    def __init__(self, container: Any, stream: Any, threads: int) -> None:
        self.container = container
        self.stream = stream
        self.tb = float(stream.time_base) if stream.time_base else 1.0
        self.start = stream.start_time or 0
        self.fps = _source_fps(stream)
        self.half = 0.5 / self.fps
        if threads > 0 and stream.codec_context is not None:
            stream.codec_context.thread_count = threads
        self.frames: Iterator[Any] | None = None
        self.cur: Any = None
        self.cur_time = -math.inf
        self.exhausted = False
        self.decoded = 0
        self.seeks = 0
        self.error = ""

    def _time(self, frame: Any) -> float:
        if frame.pts is None:
            return self.cur_time + 1.0 / self.fps if self.cur is not None else 0.0
        return (frame.pts - self.start) * self.tb

    def pull(self) -> bool:
        """Decode the next frame into `cur`; False (and `exhausted`) at the end or on an error."""
        if self.frames is None:
            self.frames = self.container.decode(self.stream)
        try:
            frame = next(self.frames)
        except StopIteration:
            self.exhausted = True
            return False
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            self.exhausted = True
            return False
        self.cur_time = self._time(frame)
        self.cur = frame
        self.decoded += 1
        return True

    def seek(self, t: float) -> None:
        """Jump to the keyframe before `t`; step further back if the demuxer lands after it."""
        offset = self.start + int(math.floor(t / self.tb))
        for _ in range(_MAX_SEEK_RETRIES + 1):
            self.seeks += 1
            try:
                self.container.seek(offset, stream=self.stream, backward=True, any_frame=False)
            except Exception as exc:
                self.error = f"seek failed: {exc}"
                self.exhausted = True
                return
            self.frames, self.cur, self.cur_time, self.exhausted = None, None, -math.inf, False
            if not self.pull():
                return
            if self.cur_time <= t - self.half or self.cur.pts is None or self.cur.pts <= self.start:
                return
            offset = self.cur.pts - 1

    def near_end(self, t: float) -> bool:
        """After the last frame: does target `t` fall within one frame interval of it?"""
        return self.cur is not None and t - self.half <= self.cur_time + 1.0 / self.fps

    def advance_to(self, t: float) -> bool:
        """Decode forward until the current frame is the one for target `t`."""
        while self.cur is None or self.cur_time < t - self.half:
            if self.exhausted or not self.pull():
                return False
        return True


def _should_seek(mode: str, reader: _Reader, t: float, keyframes: Sequence[float]) -> bool:
    if mode == "sequential":
        return False
    if reader.cur is not None and reader.cur_time >= t - reader.half:
        return False
    if mode == "seek" or (reader.exhausted and reader.error):
        return True
    if keyframes:
        return any(reader.cur_time < k <= t - reader.half for k in keyframes)
    return t - max(reader.cur_time, 0.0) > NO_INDEX_SEEK_GAP_S


def decode_open(
    container: Any,
    stream: Any,
    timestamps: Sequence[float],
    frame_size: int,
    *,
    mode: str = "auto",
    threads: int = 1,
) -> tuple[np.ndarray, DecodeInfo]:
    """Decode `timestamps` (s from the stream start) from an open stream; see the module doc."""
    if mode not in MODES:
        raise ValueError(f"decode mode={mode!r}: unknown. Fix: use one of {MODES}.")
    n = len(timestamps)
    frames = np.zeros((n, frame_size, frame_size, 3), np.uint8)
    info = DecodeInfo(
        duration=probe_duration(container, stream),
        width=int(stream.codec_context.width or 0) if stream.codec_context else 0,
        height=int(stream.codec_context.height or 0) if stream.codec_context else 0,
        times=np.zeros(n, np.float32),
        valid=np.zeros(n, bool),
    )
    reader = _Reader(container, stream, threads)
    info.source_fps = reader.fps
    keyframes = _keyframe_times(stream, reader.start) if mode == "auto" else []
    converted: dict[int, np.ndarray] = {}

    def take(j: int) -> None:
        key = reader.decoded
        if key not in converted:
            converted.clear()
            converted[key] = _to_rgb(reader.cur, frame_size)
            info.rotation = int(getattr(reader.cur, "rotation", 0) or 0)
        frames[j] = converted[key]
        info.times[j] = max(reader.cur_time, 0.0)
        info.valid[j] = True

    for j in sorted(range(n), key=lambda i: timestamps[i]):
        t = float(timestamps[j])
        if _should_seek(mode, reader, t, keyframes):
            reader.seek(t)
        if reader.advance_to(t) or reader.near_end(t):
            take(j)
    info.seeks, info.frames_decoded, info.error = reader.seeks, reader.decoded, reader.error
    if info.width == 0 and reader.cur is not None:
        info.width, info.height = reader.cur.width, reader.cur.height
    return frames, info


def load_clip(
    path: str | Path,
    timestamps_for: Callable[[ClipTiming], Sequence[float]],
    frame_size: int,
    *,
    mode: str = "auto",
    threads: int = 1,
) -> tuple[np.ndarray, DecodeInfo, list[float]]:
    """Open once, probe the timing, pick timestamps with `timestamps_for(ClipTiming)`, decode.

    Returns (frames uint8 (n,S,S,3), info, requested timestamps). Raises ClipError for clips that
    cannot be opened as video; partial decodes come back with `info.valid` False where missing.
    """
    container, stream = open_video(path)
    try:
        timing = ClipTiming(probe_duration(container, stream), stream_fps(stream))
        times = list(timestamps_for(timing))
        frames, info = decode_open(container, stream, times, frame_size, mode=mode, threads=threads)
    finally:
        container.close()
    return frames, info, times


def decode_frames(
    path: str | Path,
    timestamps: Sequence[float],
    frame_size: int,
    *,
    mode: str = "auto",
    threads: int = 1,
) -> tuple[np.ndarray, DecodeInfo]:
    """Decode the frames at `timestamps` (s) as uint8 (n, S, S, 3) RGB plus a DecodeInfo."""
    frames, info, _ = load_clip(path, lambda _d: timestamps, frame_size, mode=mode, threads=threads)
    return frames, info


def normalize_frames(
    frames: np.ndarray,
    mean: Sequence[float] = (0.5, 0.5, 0.5),
    std: Sequence[float] = (0.5, 0.5, 0.5),
) -> torch.Tensor:
    """uint8 (n, S, S, 3) → float32 (n, 3, S, S), (x/255 − mean) / std per channel.

    The default 0.5/0.5 maps to [-1, 1] (SigLIP's preprocessing).
    """
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(255.0)
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return x.sub_(m).div_(s)


def denormalize_frames(
    pixels: torch.Tensor,
    mean: Sequence[float] = (0.5, 0.5, 0.5),
    std: Sequence[float] = (0.5, 0.5, 0.5),
) -> np.ndarray:
    """Inverse of `normalize_frames`: float (n, 3, S, S) → uint8 (n, S, S, 3) RGB, clipped."""
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    unit = (pixels.detach().float().cpu() * s + m).clamp_(0.0, 1.0)
    return unit.mul_(255.0).round_().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()
