"""Which source frames the uniform sampler reads, and the frames where scene events may happen.

The consumer keeps the first and the last frame and spreads the others evenly between them:
t_i = i * (num_frames - 1) / fps / (n - 1), each read as the nearest source frame. Earlier consumers
spread them over the whole duration instead (t_i = i * num_frames / fps / (n - 1)) and read the
first frame at or after t_i minus half a frame. A "guard" is the range of source frames sampled
index i may resolve to under either rule (floor to ceil of both positions), so events placed
outside every guard give the same sampled content whichever rule the consumer follows.
"""

from __future__ import annotations

import math

SAMPLED_FRAMES = 8


def sampled_frames(num_frames: int, fps: float, n: int = SAMPLED_FRAMES) -> list[int]:
    """Source frame read for each of the n timestamps (first and last frame, the rest evenly)."""
    if n == 1:
        return [0]
    return [round(i * (num_frames - 1) / (n - 1)) for i in range(n)]


def sample_guards(num_frames: int, fps: float, n: int = SAMPLED_FRAMES) -> list[tuple[int, int]]:
    """Inclusive (lo, hi) source-frame range each sampled timestamp may resolve to.

    Raises ValueError when the clip is too short for the ranges to be separated by free frames.
    """
    guards = []
    for i in range(n):
        spread_last = i * (num_frames - 1) / (n - 1)  # first and last frame kept
        spread_all = i * num_frames / (n - 1)  # spread over the whole duration
        lo = min(math.floor(min(spread_last, spread_all)), num_frames - 1)
        hi = min(math.ceil(max(spread_last, spread_all)), num_frames - 1)
        guards.append((lo, hi))
    for (_, hi_prev), (lo, _) in zip(guards, guards[1:], strict=False):
        if lo - hi_prev < 2:
            raise ValueError(
                f"num_frames={num_frames} at fps={fps} is too short to place events between "
                f"{n} sampled frames; use duration*fps >= {3 * n + 1}"
            )
    return guards


def event_frame_range(guards: list[tuple[int, int]], index: int) -> tuple[int, int]:
    """Inclusive range of frames f where a state change taking effect at f is first seen at
    sampled index `index` (and at no earlier sampled index) under every frame mapping."""
    if not 1 <= index < len(guards):
        raise ValueError(f"event index {index} must be in [1, {len(guards) - 1}]")
    return guards[index - 1][1] + 1, guards[index][0]
