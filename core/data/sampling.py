"""Frame sampling policies: a clip's timing → the timestamps (seconds) to decode.

Every policy is `fn(clip: ClipTiming, fps, min_frames, max_frames) -> list[float]`, registered in
SAMPLING_POLICIES so configs can name it. Both policies follow one rule: the first and the last frame
of the clip are kept, the others are spread evenly between them, there are at most `max_frames` and
at least `min_frames` timestamps when the clip has that many frames, and never more timestamps than
the clip has frames (so no source frame is decoded twice). They differ only in how many frames a clip
of a given length gets. Timestamps are relative to the first frame of the stream; the decoder maps
each to the nearest source frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from core.registry import SAMPLING_POLICIES


@dataclass(frozen=True)
class ClipTiming:
    """What a policy knows about a clip: its duration (s) and source frame rate (0 = unknown).

    A stream of n frames at rate r lasts n/r seconds, and its last frame starts at (n − 1)/r.
    """

    duration: float
    source_fps: float = 0.0

    @property
    def last_frame(self) -> float:
        """Start time of the last frame (the duration itself when the rate is unknown)."""
        if self.duration <= 0:
            return 0.0
        if self.source_fps <= 0:
            return self.duration
        return max(0.0, self.duration - 1.0 / self.source_fps)

    @property
    def num_frames(self) -> int | None:
        """Source frames in the clip, or None when the rate is unknown."""
        if self.source_fps <= 0 or self.duration <= 0:
            return None
        return max(1, round(self.duration * self.source_fps))


def _spread(clip: ClipTiming, wanted: int, min_frames: int, max_frames: int) -> list[float]:
    """`wanted` clamped to [min_frames, max_frames] and to the clip's frames, first to last frame."""
    n = min(max(wanted, min_frames), max_frames)
    if clip.num_frames is not None:
        n = min(n, clip.num_frames)
    last = clip.last_frame
    if n <= 1 or last <= 0:
        return [0.0]
    return [i * last / (n - 1) for i in range(n)]


@SAMPLING_POLICIES.register("uniform")
def uniform(clip: ClipTiming, fps: float, min_frames: int, max_frames: int) -> list[float]:
    """round(duration·fps) frames (the Molmo2 default), first and last frame kept."""
    return _spread(clip, round(clip.duration * fps), min_frames, max_frames)


@SAMPLING_POLICIES.register("fps")
def fixed_rate(clip: ClipTiming, fps: float, min_frames: int, max_frames: int) -> list[float]:
    """At least `fps` frames per second (gaps ≤ 1/fps), first and last frame kept.

    A long clip hits `max_frames` and is then covered uniformly from start to end, never truncated.
    """
    return _spread(clip, math.ceil(clip.last_frame * fps - 1e-9) + 1, min_frames, max_frames)


def sample_timestamps(
    policy: str, clip: ClipTiming, fps: float, min_frames: int, max_frames: int
) -> list[float]:
    """Look up `policy` in the registry and apply it."""
    return SAMPLING_POLICIES.get(policy)(clip, fps, min_frames, max_frames)
