"""Frame sampling policies: clip duration → the timestamps (seconds) to decode.

Every policy is `fn(duration, fps, min_frames, max_frames) -> list[float]`, registered in
SAMPLING_POLICIES so configs can name it. Timestamps are relative to the first frame of the stream.
"""

from __future__ import annotations

from typing import Any

from core.registry import SAMPLING_POLICIES


def _spaced(duration: float, n: int) -> list[float]:
    """`n` points from 0 to `duration` inclusive; a single point (or no duration) is [0.0]."""
    if duration <= 0 or n <= 1:
        return [0.0]
    return [i * duration / (n - 1) for i in range(n)]


@SAMPLING_POLICIES.register("uniform")
def uniform(duration: float, fps: float, min_frames: int, max_frames: int) -> list[float]:
    """round(duration·fps) frames clamped to [min_frames, max_frames], first at 0, last at the end."""
    if duration <= 0:
        return [0.0]
    n = min(max(round(duration * fps), min_frames), max_frames)
    return _spaced(duration, n)


@SAMPLING_POLICIES.register("fps")
def fixed_rate(duration: float, fps: float, min_frames: int, max_frames: int) -> list[float]:
    """One frame every 1/fps s from 0 while < duration, capped at max_frames.

    Clips too short to give min_frames at that rate fall back to min_frames evenly spaced frames.
    """
    if duration <= 0:
        return [0.0]
    times: list[float] = []
    k = 0
    while k / fps < duration and len(times) < max_frames:
        times.append(k / fps)
        k += 1
    if len(times) < min_frames:
        return _spaced(duration, min(min_frames, max_frames))
    return times


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


def sample_timestamps(
    policy: str, duration: float, fps: float, min_frames: int, max_frames: int
) -> list[float]:
    """Look up `policy` in the registry and apply it."""
    return SAMPLING_POLICIES.get(policy)(duration, fps, min_frames, max_frames)
