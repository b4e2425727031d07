"""Scene description: a background plus small objects with per-frame position, visibility and colour.

A scene is pure metadata (no pixels); render.py draws it. Builders place every static object inside
one window of the GRID x GRID frame grid and keep moving objects in a lane (one window row or column)
that no static object uses, so objects never overlap and each occupies few windows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from core.data.synthetic.timing import SAMPLED_FRAMES, event_frame_range
from core.data.synthetic.vocab import (
    COLOUR_NAMES,
    COUNT_WORDS,
    DIRECTIONS,
    GRID,
    OBJECT_SIZES,
    REFERENCE_SIZE,
    SHAPES,
    SPEED_RANGE,
)

BACKGROUND_KINDS: tuple[str, ...] = ("noise", "stripes")
# Sampled frame indices (inclusive) where a "changed" object's new colour first shows.
CHANGED_INDICES: tuple[int, int] = (2, 6)
_UNIT = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}


@dataclass(frozen=True)
class SceneObject:
    """One object: shape, size (px), colour track, straight-line motion and visible frame range."""

    oid: int
    shape: str
    size: int
    colour: str
    x0: float
    y0: float
    vx: float = 0.0
    vy: float = 0.0
    start: int = 0
    end: int | None = None  # first invisible frame; None = visible to the end
    new_colour: str | None = None
    change_frame: int | None = None
    needle: bool = False

    def position(self, frame: int) -> tuple[int, int]:
        """Top-left pixel (x, y) at a source frame."""
        return round(self.x0 + self.vx * frame), round(self.y0 + self.vy * frame)

    def visible(self, frame: int) -> bool:
        return frame >= self.start and (self.end is None or frame < self.end)

    def colour_at(self, frame: int) -> str:
        if self.change_frame is not None and frame >= self.change_frame:
            return self.new_colour or self.colour
        return self.colour

    @property
    def direction(self) -> str | None:
        """Direction of motion, or None for a static object."""
        for name, (ux, uy) in _UNIT.items():
            if (self.vx * ux > 0) or (self.vy * uy > 0):
                return name
        return None

    def to_json(self) -> dict:
        return {
            "id": self.oid,
            "shape": self.shape,
            "colour": self.colour,
            "final_colour": self.new_colour or self.colour,
            "direction": self.direction,
            "start": self.start,
            "end": self.end,
            "change_frame": self.change_frame,
            "needle": self.needle,
        }


@dataclass(frozen=True)
class Background:
    """Low-contrast static texture; `seed` drives its random field so it needs no pixels here."""

    kind: str
    seed: int


@dataclass(frozen=True)
class Scene:
    """Everything needed to render a clip and state its QA row."""

    size: int
    fps: int
    num_frames: int
    background: Background
    objects: tuple[SceneObject, ...]
    question_type: str
    answer: str
    # Question parameters besides the type (named colours for which_first/changed).
    named: tuple[str, ...] = field(default_factory=tuple)


class _Layout:
    """Allocates non-overlapping object positions on the window grid of one frame."""

    def __init__(self, rng: np.random.Generator, size: int, num_frames: int, guards) -> None:
        self.rng = rng
        self.size = size
        self.window = size // GRID
        self.num_frames = num_frames
        self.guards = guards
        self.free = [(r, c) for r in range(GRID) for c in range(GRID)]
        self.oid = 0

    def _next_id(self) -> int:
        self.oid += 1
        return self.oid - 1

    def object_size(self) -> int:
        base = int(self.rng.choice(OBJECT_SIZES))
        return max(3, min(self.window, round(base * self.size / REFERENCE_SIZE)))

    def static(self, shape: str, colour: str, **kw) -> SceneObject:
        """A static object inside one free window."""
        s = self.object_size()
        r, c = self.free.pop(int(self.rng.integers(len(self.free))))
        x = c * self.window + int(self.rng.integers(0, self.window - s + 1))
        y = r * self.window + int(self.rng.integers(0, self.window - s + 1))
        return SceneObject(self._next_id(), shape, s, colour, float(x), float(y), **kw)

    def moving(self, shape: str, colour: str, direction: str) -> SceneObject:
        """An object crossing the frame in a straight line inside one lane, staying in frame."""
        s = self.object_size()
        steps = self.num_frames - 1
        speed = float(self.rng.uniform(*SPEED_RANGE)) * self.size / REFERENCE_SIZE
        speed = min(speed, (self.size - s) / steps)
        travel = speed * steps
        along = float(self.rng.uniform(0.0, self.size - s - travel))
        ux, uy = _UNIT[direction]
        if ux + uy < 0:
            along += travel
        lane = int(self.rng.integers(GRID))
        across = float(lane * self.window + int(self.rng.integers(0, self.window - s + 1)))
        if ux:
            self.free = [(r, c) for r, c in self.free if r != lane]
            x0, y0, vx, vy = along, across, ux * speed, 0.0
        else:
            self.free = [(r, c) for r, c in self.free if c != lane]
            x0, y0, vx, vy = across, along, 0.0, uy * speed
        return SceneObject(self._next_id(), shape, s, colour, x0, y0, vx, vy)

    def event_frame(self, index: int) -> int:
        """A frame where a change first shows at sampled index `index`."""
        lo, hi = event_frame_range(self.guards, index)
        return int(self.rng.integers(lo, hi + 1))


def _pick(rng: np.random.Generator, pool, k: int, exclude=()) -> list[str]:
    options = [p for p in pool if p not in exclude]
    return [options[i] for i in rng.choice(len(options), size=k, replace=False)]


def _shape(rng: np.random.Generator, exclude=()) -> str:
    return _pick(rng, SHAPES, 1, exclude)[0]


def _distractors(lay: _Layout, used: list[str], k: int, shape_exclude=()) -> list[SceneObject]:
    """k static distractors; with probability 0.3 one of them appears late or disappears,
    always staying visible in at least three sampled frames."""
    rng = lay.rng
    colours = _pick(rng, COLOUR_NAMES, k, used)
    used.extend(colours)
    objs = []
    for colour in colours:
        kw = {}
        if not objs and rng.random() < 0.3:
            if rng.random() < 0.5:
                kw["start"] = lay.event_frame(int(rng.integers(2, 6)))
            else:
                kw["end"] = lay.event_frame(int(rng.integers(3, 7)))
        objs.append(lay.static(_shape(rng, shape_exclude), colour, **kw))
    return objs


def _mover_scene(lay: _Layout, colour: str, shape: str, direction: str) -> list[SceneObject]:
    rng = lay.rng
    mover = lay.moving(shape, colour, direction)
    k = int(rng.integers(1, 3))
    return [mover, *_distractors(lay, [colour], k, shape_exclude=(shape,))]


def build_objects(
    lay: _Layout, question_type: str, answer: str, variant: int
) -> tuple[list[SceneObject], tuple[str, ...]]:
    """Objects for a clip whose question of `question_type` has `answer`; returns the objects and
    the colours the question names (which_first: in question order; changed: the asked object)."""
    rng = lay.rng
    if question_type == "colour":
        return _mover_scene(lay, answer, _shape(rng), _pick(rng, DIRECTIONS, 1)[0]), ()
    if question_type == "shape":
        colour = _pick(rng, COLOUR_NAMES, 1)[0]
        return _mover_scene(lay, colour, answer, _pick(rng, DIRECTIONS, 1)[0]), ()
    if question_type == "direction":
        colour = _pick(rng, COLOUR_NAMES, 1)[0]
        return _mover_scene(lay, colour, _shape(rng), answer), ()
    if question_type == "count":
        n = COUNT_WORDS.index(answer) + 1
        return [lay.static(_shape(rng), c) for c in _pick(rng, COLOUR_NAMES, n)], ()
    if question_type == "which_first":
        other = _pick(rng, COLOUR_NAMES, 1, (answer,))[0]
        first_index = int(rng.integers(0, 4))
        second_index = int(rng.integers(first_index + 2, 7))
        first_start = 0 if first_index == 0 else lay.event_frame(first_index)
        objs = [
            lay.static(_shape(rng), answer, start=first_start),
            lay.static(_shape(rng), other, start=lay.event_frame(second_index)),
        ]
        if rng.random() < 0.5:
            objs += _static_extras(lay, [answer, other], 1)
        named = (answer, other) if variant == 0 else (other, answer)
        return objs, named
    if question_type == "changed":
        n = int(rng.integers(2, 4))
        colours = _pick(rng, COLOUR_NAMES, n)
        new = _pick(rng, COLOUR_NAMES, 1, colours)[0]
        changer = 0 if answer == "yes" else (1 if rng.random() < 0.5 else None)
        objs = []
        for i, colour in enumerate(colours):
            kw = {}
            if i == changer:
                index = int(rng.integers(CHANGED_INDICES[0], CHANGED_INDICES[1] + 1))
                kw = {"new_colour": new, "change_frame": lay.event_frame(index)}
            objs.append(lay.static(_shape(rng), colour, **kw))
        return objs, (colours[0],)
    if question_type == "appears":
        # The only object, visible for 1-3 sampled frames strictly inside the clip (never at the
        # first or last one): its colour is nowhere else in the clip.
        span = int(rng.integers(1, 4))
        first = int(rng.integers(1, SAMPLED_FRAMES - span))
        start, end = lay.event_frame(first), lay.event_frame(first + span)
        return [lay.static(_shape(rng), answer, start=start, end=end)], ()
    if question_type == "turns_into":
        # The only object, named by its first colour; the new one shows from sampled index 1..7 on.
        colour = _pick(rng, COLOUR_NAMES, 1, (answer,))[0]
        change = lay.event_frame(int(rng.integers(1, SAMPLED_FRAMES)))
        return [lay.static(_shape(rng), colour, new_colour=answer, change_frame=change)], (colour,)
    if question_type == "needle":
        haystack = _pick(rng, COLOUR_NAMES, int(rng.integers(1, 3)), (answer,))
        first = int(rng.integers(1, 7))
        last = min(6, first + int(rng.integers(0, 2)))
        start = lay.event_frame(first)
        end = lay.event_frame(last + 1)
        objs = [lay.static(_shape(rng), c) for c in haystack]
        objs.append(lay.static(_shape(rng), answer, start=start, end=end, needle=True))
        return objs, ()
    raise ValueError(f"unknown question_type {question_type!r}")


def _static_extras(lay: _Layout, used: list[str], k: int) -> list[SceneObject]:
    return [lay.static(_shape(lay.rng), c) for c in _pick(lay.rng, COLOUR_NAMES, k, used)]


def build_scene(
    rng: np.random.Generator,
    question_type: str,
    answer: str,
    variant: int,
    *,
    size: int,
    fps: int,
    num_frames: int,
    guards,
) -> Scene:
    """A random scene (drawn from `rng`) whose `question_type` question has answer `answer`."""
    lay = _Layout(rng, size, num_frames, guards)
    background = Background(
        BACKGROUND_KINDS[int(rng.integers(len(BACKGROUND_KINDS)))], int(rng.integers(2**31))
    )
    objects, named = build_objects(lay, question_type, answer, variant)
    return Scene(size, fps, num_frames, background, tuple(objects), question_type, answer, named)
