"""Which source frames the uniform sampler reads, and the frames where scene events may happen.

The consumer samples n frames at t_i = i * duration / (n - 1) and maps each to a source frame near
t_i * fps (rounding, or the first frame at or after t_i minus half a frame). A "guard" is the set
{floor, ceil} of t_i * fps clamped to the clip, so events placed outside every guard give the same
sampled content under either mapping.
"""

from __future__ import annotations

import math

SAMPLED_FRAMES = 8


def sampled_frames(num_frames: int, fps: float, n: int = SAMPLED_FRAMES) -> list[int]:
    """Source frame index read for each of the n uniform timestamps (round(t*fps), clamped)."""
    duration = num_frames / fps
    return [min(round(i * duration / (n - 1) * fps), num_frames - 1) for i in range(n)]


def sample_guards(num_frames: int, fps: float, n: int = SAMPLED_FRAMES) -> list[tuple[int, int]]:
    """Inclusive (lo, hi) source-frame range each sampled timestamp may resolve to.

    Raises ValueError when the clip is too short for the ranges to be separated by free frames.
    """
    duration = num_frames / fps
    guards = []
    for i in range(n):
        x = i * duration / (n - 1) * fps
        lo = min(math.floor(x), num_frames - 1)
        hi = min(math.ceil(x), num_frames - 1)
        guards.append((lo, hi))
    for (_, hi_prev), (lo, _) in zip(guards, guards[1:], strict=False):
        if lo - hi_prev < 2:
            raise ValueError(
                f"num_frames={num_frames} at fps={fps} is too short to place events between "
                f"{n} sampled frames; use duration*fps >= {3 * n}"
            )
    return guards


def event_frame_range(guards: list[tuple[int, int]], index: int) -> tuple[int, int]:
    """Inclusive range of frames f where a state change taking effect at f is first seen at
    sampled index `index` (and at no earlier sampled index) under every frame mapping."""
    if not 1 <= index < len(guards):
        raise ValueError(f"event index {index} must be in [1, {len(guards) - 1}]")
    return guards[index - 1][1] + 1, guards[index][0]
