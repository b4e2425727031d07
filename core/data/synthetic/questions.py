"""Question text, options, captions and the balanced (type, answer) plan of a split."""

from __future__ import annotations

import numpy as np

from core.data.synthetic.scene import Scene, SceneObject
from core.data.synthetic.vocab import ANSWER_SETS, QUESTION_TYPES

_TEMPLATES = {
    "colour": "what colour is the moving object?",
    "shape": "what shape is the moving object?",
    "direction": "which way does the moving object go?",
    "count": "how many objects are there?",
    "which_first": "which appeared first, the {0} object or the {1} object?",
    "changed": "did the {0} object change colour?",
    "needle": "what colour is the object that appears briefly?",
    "appears": "what colour is the object that appears mid-clip?",
    "turns_into": "what colour does the {0} object turn into?",
}
_BACKGROUND_WORDS = {"noise": "blotchy", "stripes": "striped"}


def question_text(scene: Scene) -> str:
    return _TEMPLATES[scene.question_type].format(*scene.named)


def options(scene: Scene) -> list[str]:
    """Allowed answers of the row: the two named colours for which_first, the colours other than
    the named one for turns_into, else the type's set."""
    if scene.question_type == "which_first":
        return list(scene.named)
    if scene.question_type == "turns_into":
        return [c for c in ANSWER_SETS["turns_into"] if c not in scene.named]
    return list(ANSWER_SETS[scene.question_type])


def _phrase(obj: SceneObject, num_frames: int) -> str:
    noun = f"a {obj.colour} {obj.shape}"
    if obj.needle:
        return f"{noun} flashes briefly"
    if obj.direction is not None:
        return f"{noun} moves {obj.direction}"
    if obj.new_colour is not None:
        return f"{noun} turns {obj.new_colour}"
    if obj.start > 0 and obj.end is not None and obj.end < num_frames:
        return f"{noun} appears mid-clip"
    if obj.start > 0:
        return f"{noun} appears later"
    if obj.end is not None and obj.end < num_frames:
        return f"{noun} disappears"
    return f"{noun} stays still"


def caption(scene: Scene) -> str:
    """One sentence naming every object and its behaviour, in order of appearance."""
    ordered = sorted(scene.objects, key=lambda o: (o.start, o.oid))
    phrases = [_phrase(o, scene.num_frames) for o in ordered]
    body = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
    return f"{body} on a {_BACKGROUND_WORDS[scene.background.kind]} background"


def plan_split(
    n: int, rng: np.random.Generator, question_types: tuple[str, ...] = QUESTION_TYPES
) -> list[tuple[str, str, int]]:
    """(question_type, answer, variant) for n clips, in random order, using only `question_types`
    (known types in QUESTION_TYPES order; GenerationArgs validates and orders them).

    The chosen types are balanced (counts differ by at most one); within a type the answers cycle
    through shuffled rounds of the answer set, so their counts differ by at most one too. For
    which_first, `variant` says whether the answer is the first (0) or second (1) colour named; it
    cycles through shuffled rounds of (0, 1) independently, so it is balanced as well. Other types
    use variant 0. With all types the random draws are those of the original all-type plan.
    """
    if not question_types:
        raise ValueError("plan_split question_types=(): name at least one question type")
    per_type: dict[str, int] = {t: 0 for t in question_types}
    order = [question_types[i] for i in rng.permutation(len(question_types))]
    for i in range(n):
        per_type[order[i % len(order)]] += 1
    plan: list[tuple[str, str, int]] = []
    for qtype in question_types:
        count = per_type[qtype]
        answers = _rounds(rng, list(ANSWER_SETS[qtype]), count)
        variants = _rounds(rng, [0, 1], count) if qtype == "which_first" else [0] * count
        plan += [(qtype, a, v) for a, v in zip(answers, variants, strict=True)]
    return [plan[j] for j in rng.permutation(len(plan))]


def _rounds(rng: np.random.Generator, items: list, count: int) -> list:
    """`count` items taken from consecutive shuffled rounds of `items`."""
    out: list = []
    while len(out) < count:
        out += [items[j] for j in rng.permutation(len(items))]
    return out[:count]
