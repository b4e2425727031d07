"""The single source of truth for how many visual tokens reach the language model.

Config checks, model build checks, the data side, the reducers and the FLOPs counter all call these
functions, so "kept tokens" means the same number everywhere.
"""

from __future__ import annotations

import math
from fractions import Fraction

from core.registry import FUSION_ARCHS


def patch_grid(frame_size: int, patch_size: int) -> int:
    """Patches per side of a square frame."""
    if frame_size % patch_size:
        raise ValueError(
            f"data.frame_size={frame_size} is not a multiple of vision.patch_size={patch_size}. "
            f"Fix: use a frame size such as {frame_size - frame_size % patch_size or patch_size}."
        )
    return frame_size // patch_size


def windows_per_side(grid: int, window: int) -> int:
    """ceil(grid / w): windows per side, the last one ragged when w does not divide the grid."""
    return math.ceil(grid / window)


def tokens_per_frame(grid: int, window: int) -> int:
    """P′ = ceil(grid / w)²: one token per (possibly ragged) w×w window."""
    return windows_per_side(grid, window) ** 2


def _exact(ratio: float) -> Fraction:
    # Exact decimal reading of the ratio: 0.3·81·10 is 243, never 242.99… → 242.
    return Fraction(repr(float(ratio)))


def pruned_tokens(frames: int, per_frame: int, ratio: float, prune_from_frame: int = 0) -> int:
    """floor(P′·ratio·(F − prune_from_frame)), clipped at 0; 1-frame inputs (images) lose nothing."""
    if frames <= 1 or ratio <= 0:
        return 0
    prunable = frames - prune_from_frame
    if prunable <= 0:
        return 0
    return max(0, math.floor(per_frame * _exact(ratio) * prunable))


def kept_tokens(frames: int, per_frame: int, ratio: float, prune_from_frame: int = 0) -> int:
    """kept = F·P′ − floor(P′·ratio·(F − prune_from_frame)); images (F = 1) are never pruned."""
    return frames * per_frame - pruned_tokens(frames, per_frame, ratio, prune_from_frame)


def clip_kept_tokens(
    real_frames: list[int], frames: int, per_frame: int, ratio: float, prune_from_frame: int = 0
) -> list[int]:
    """Each clip's own budget in a batch padded to `frames`: kept_tokens of its real frames.

    Every clip of the batch carries kept_tokens(frames) slots (static shapes); a clip with fewer
    real frames fills only its own budget of them and the rest are masked filler
    (`core.models.clip_slots`). The budget is capped at those slots: a one-frame clip would be an
    image, never pruned, but in a batch of videos whose slots are fewer it keeps as many as they
    hold. A clip with no real frame (undecodable: every token is masked) takes the padded budget,
    so a batch never asks a reducer for zero tokens."""
    slots = kept_tokens(frames, per_frame, ratio, prune_from_frame)
    out = []
    for real in real_frames:
        if not 0 <= real <= frames:
            raise ValueError(f"a clip has {real} real frames, outside 0..{frames}")
        out.append(min(slots, kept_tokens(real or frames, per_frame, ratio, prune_from_frame)))
    return out


def residual_visual_tokens(arch: str, kept: int) -> int:
    """Visual tokens that occupy the LM's residual stream (the arch's `residual_visual`; e.g.
    cross-attention keeps them in K/V only)."""
    return kept if FUSION_ARCHS.get(arch).residual_visual else 0


def check_sequence_budget(
    arch: str, frames: int, per_frame: int, kept: int, max_text_len: int, max_seq_len: int
) -> None:
    """Raise before any model is built when visual + text tokens do not fit the LM's context."""
    residual = residual_visual_tokens(arch, kept)
    if residual + max_text_len > max_seq_len:
        raise ValueError(
            f"token budget exceeded for fusion.arch={arch}: {frames} frames × {per_frame} tokens "
            f"= {frames * per_frame} visual tokens ({kept} kept after pruning) + data.max_text_len="
            f"{max_text_len} = {residual + max_text_len} > lm.max_seq_len={max_seq_len}. Fix: raise "
            f"lm.max_seq_len to at least {residual + max_text_len}, or lower data.max_frames, raise "
            "connector.window, or prune more."
        )
