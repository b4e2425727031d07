"""Where each question's evidence lives: which of the sampled frames determine its answer.

`answerable(scene, kept)` is True when the answer follows from the object windows of the sampled
frames `kept` (indices 0..7 into the uniformly sampled frames), given how the generator builds
scenes of that type. `CROPS` are the fixed temporal crops the benchmark is judged against; the
oracle keeps every object window of every frame and so answers every question. This is metadata
only (no pixels): it bounds what a model that sees exactly those frames can know.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from core.data.synthetic.scene import CHANGED_INDICES, Scene, SceneObject
from core.data.synthetic.timing import SAMPLED_FRAMES, sampled_frames
from core.data.synthetic.vocab import QUESTION_TYPES

ALL_FRAMES: tuple[int, ...] = tuple(range(SAMPLED_FRAMES))
CROPS: dict[str, tuple[int, ...]] = {
    "frame_0": (0,),
    "first_half": (0, 1, 2, 3),
    "uniform_half": (0, 2, 4, 6),
    # What a collapsed STTS keeps: ties broken in raster order drop frames 1-4 whole.
    "late_crop": (0, 5, 6, 7),
    "oracle": ALL_FRAMES,
}


class _View:
    """An object's visibility and colour at each sampled frame index."""

    def __init__(self, scene: Scene) -> None:
        self.frames = sampled_frames(scene.num_frames, scene.fps)
        self.scene = scene

    def visible(self, obj: SceneObject, t: int) -> bool:
        return obj.visible(self.frames[t])

    def colour(self, obj: SceneObject, t: int) -> str:
        return obj.colour_at(self.frames[t])

    def named(self, colour: str) -> SceneObject:
        """The object whose first colour is `colour` (questions name objects by it)."""
        return next(o for o in self.scene.objects if o.colour == colour)


def _two_frames(view: _View, kept: Sequence[int]) -> bool:
    # The mover shifts >= 4 px between sampled frames: any two frames show which object moves.
    return len(kept) >= 2


def _any_frame(view: _View, kept: Sequence[int]) -> bool:
    return len(kept) >= 1  # count scenes: every object is visible in every frame


def _which_first(view: _View, kept: Sequence[int]) -> bool:
    first = view.named(view.scene.answer)
    other = view.named(next(c for c in view.scene.named if c != view.scene.answer))
    return any(view.visible(first, t) and not view.visible(other, t) for t in kept)


def _changed(view: _View, kept: Sequence[int]) -> bool:
    obj = view.named(view.scene.named[0])
    if view.scene.answer == "yes":
        return len({view.colour(obj, t) for t in kept}) == 2
    # "no" is settled once a frame at or after the latest index a change can show at is seen.
    return max(kept) >= CHANGED_INDICES[1]


def _needle(view: _View, kept: Sequence[int]) -> bool:
    target = next(o for o in view.scene.objects if o.needle)
    return any(view.visible(target, t) for t in kept)


def _appears(view: _View, kept: Sequence[int]) -> bool:
    target = view.named(view.scene.answer)
    seen = [view.visible(target, t) for t in kept]
    return any(seen) and not all(seen)


def _turns_into(view: _View, kept: Sequence[int]) -> bool:
    obj = view.named(view.scene.named[0])
    return any(view.colour(obj, t) == view.scene.answer for t in kept)


_RULES: dict[str, Callable[[_View, Sequence[int]], bool]] = {
    "colour": _two_frames,
    "shape": _two_frames,
    "direction": _two_frames,
    "count": _any_frame,
    "which_first": _which_first,
    "changed": _changed,
    "needle": _needle,
    "appears": _appears,
    "turns_into": _turns_into,
}
assert set(_RULES) == set(QUESTION_TYPES), "every question type needs an evidence rule"


def answerable(scene: Scene, kept: Iterable[int]) -> bool:
    """Whether the sampled frames `kept` (whole frames, or their object windows) settle the answer."""
    frames = sorted(set(kept))
    if any(not 0 <= t < SAMPLED_FRAMES for t in frames):
        raise ValueError(f"kept={frames}: sampled frame indices must lie in [0, {SAMPLED_FRAMES})")
    return bool(frames) and _RULES[scene.question_type](_View(scene), frames)


def evidence_fractions(scenes: Iterable[Scene]) -> dict[str, dict[str, float]]:
    """{question_type: {crop: fraction of its questions answerable from that crop}} plus "all"."""
    hits: dict[str, dict[str, int]] = {}
    counts: dict[str, int] = {}
    for scene in scenes:
        for key in (scene.question_type, "all"):
            counts[key] = counts.get(key, 0) + 1
            row = hits.setdefault(key, dict.fromkeys(CROPS, 0))
            for crop, kept in CROPS.items():
                row[crop] += answerable(scene, kept)
    order = [t for t in (*QUESTION_TYPES, "all") if t in counts]
    return {t: {c: round(hits[t][c] / counts[t], 4) for c in CROPS} for t in order}
