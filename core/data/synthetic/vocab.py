"""The benchmark's fixed vocabulary: colours, shapes, directions, question types and answer sets."""

from __future__ import annotations

# Six saturated colours, well separated in RGB and all brighter (in luma) than the dark backgrounds,
# so each survives yuv420p chroma subsampling and H.264 quantisation.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (250, 40, 40),
    "green": (40, 215, 40),
    "blue": (50, 90, 255),
    "yellow": (245, 225, 30),
    "magenta": (235, 45, 235),
    "cyan": (35, 215, 235),
}
COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "cross")
DIRECTIONS: tuple[str, ...] = ("left", "right", "up", "down")
COUNT_WORDS: tuple[str, ...] = ("one", "two", "three", "four")
YES_NO: tuple[str, ...] = ("yes", "no")

QUESTION_TYPES: tuple[str, ...] = (
    "colour",
    "shape",
    "direction",
    "count",
    "which_first",
    "changed",
    "needle",
    "appears",
    "turns_into",
)

# Answer set per question type. `which_first` questions name two colours; its per-row options are
# those two colours, so its answer set here is all colours but its chance is 1/2. `turns_into`
# names the object's first colour; its options are the five others (chance 1/5).
ANSWER_SETS: dict[str, tuple[str, ...]] = {
    "colour": COLOUR_NAMES,
    "shape": SHAPES,
    "direction": DIRECTIONS,
    "count": COUNT_WORDS,
    "which_first": COLOUR_NAMES,
    "changed": YES_NO,
    "needle": COLOUR_NAMES,
    "appears": COLOUR_NAMES,
    "turns_into": COLOUR_NAMES,
}

# Pixel sizes of objects at the reference frame size of 64 (scaled for other sizes).
REFERENCE_SIZE = 64
OBJECT_SIZES: tuple[int, ...] = (9, 10)
# Speed of moving objects at the reference size, in pixels per source frame.
SPEED_RANGE: tuple[float, float] = (1.0, 1.5)
# The frame grid the tiny model pools to: GRID x GRID windows per frame (16x16 px at 64x64).
GRID = 4


def question_types_problem(types: object) -> tuple[str, str] | None:
    """(problem, fix) when `types` is not a non-empty, duplicate-free list of known question types;
    None when it is valid. Callers format the message with their own field name."""
    available = ", ".join(QUESTION_TYPES)
    if isinstance(types, str) or not isinstance(types, list | tuple):
        return "must be a list of question types", f"give a list drawn from {available}"
    if not types:
        return "must not be empty", f"name at least one of {available}"
    unknown = [t for t in types if t not in QUESTION_TYPES]
    if unknown:
        return f"unknown question type {unknown[0]!r}", f"use types from {available}"
    duplicates = sorted({t for t in types if types.count(t) > 1}, key=QUESTION_TYPES.index)
    if duplicates:
        return f"repeats {duplicates[0]!r}", "name each question type once"
    return None
