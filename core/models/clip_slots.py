"""Per-clip budgets in a batch of static shape.

Every clip of a batch padded to F frames carries K_F = kept_tokens(F) visual-token slots, so the
LLM side keeps one shape per (F, ratio) whatever the clips' lengths. A clip with r real frames is
reduced to its own budget kept_tokens(r) (`core.budget.clip_kept_tokens`): the reducer runs once
per group of clips that share a budget (clips are independent, so a clip's tokens are the same in
any batch), and the clip's tokens fill the first slots, in (frame, window) order; the remaining
slots are filler, masked like padded frames' tokens (`valid` False, zero features, size 1). Where a
stage can skip the filler's work it does: the packed in-ViT blocks and the connector never see it.
The analytic FLOPs and the sequence-budget check count K_F (the padded maximum).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from core import budget


@dataclass(frozen=True)
class BudgetGroup:
    """Clips of a batch (`index`, ascending) with the same number of real frames (a clip without
    one counts as full), so the same budget `n_keep`."""

    index: torch.Tensor  # (b,) long
    n_keep: int
    whole: bool = False  # the whole batch, in order: `take` needs no copy

    def take(self, x: torch.Tensor | None) -> torch.Tensor | None:
        """The rows of a (B, ...) tensor for this group's clips (None stays None)."""
        return x if x is None or self.whole else x[self.index]


def budget_groups(
    frame_mask: torch.Tensor, per_frame: int, ratio: float, prune_from_frame: int = 0
) -> list[BudgetGroup]:
    """The batch's clips grouped by their number of real frames, the longest first."""
    frames = frame_mask.shape[1]
    real = [r or frames for r in frame_mask.sum(1).tolist()]
    kept = budget.clip_kept_tokens(real, frames, per_frame, ratio, prune_from_frame)
    lengths = sorted(set(real), reverse=True)
    if len(lengths) == 1:
        return [whole_batch(frame_mask, kept[0])]
    groups = []
    for length in lengths:
        index = [i for i, r in enumerate(real) if r == length]
        groups.append(BudgetGroup(torch.tensor(index, device=frame_mask.device), kept[index[0]]))
    return groups


def whole_batch(frame_mask: torch.Tensor, n_keep: int) -> BudgetGroup:
    """One group of every clip of the batch."""
    index = torch.arange(frame_mask.shape[0], device=frame_mask.device)
    return BudgetGroup(index, n_keep, whole=True)


def is_uniform(groups: list[BudgetGroup], n_keep: int) -> bool:
    """Every clip keeps `n_keep`: the batch needs no filler."""
    return len(groups) == 1 and groups[0].n_keep == n_keep


def slot_positions(clip: torch.Tensor, batch: int, slots: int) -> torch.Tensor:
    """clip (T,) long, the clip of each token (any order; a clip's tokens keep their order) →
    (T,) flat index into (batch·slots): the clip's tokens fill its first slots."""
    order = torch.argsort(clip, stable=True)
    counts = torch.bincount(clip, minlength=batch)
    if clip.numel() and int(counts.max()) > slots:
        raise RuntimeError(f"a clip kept {int(counts.max())} tokens, its batch has {slots} slots")
    start = torch.cumsum(counts, 0) - counts
    sorted_clip = clip[order]
    rank = torch.arange(clip.numel(), device=clip.device) - start[sorted_clip]
    flat = torch.empty_like(clip)
    flat[order] = sorted_clip * slots + rank
    return flat


def to_slots(
    values: torch.Tensor, flat: torch.Tensor, batch: int, slots: int, fill: float | bool = 0
) -> torch.Tensor:
    """values (T, ...) at `slot_positions` → (batch, slots, ...), `fill` in the unused slots."""
    out = values.new_full((batch * slots, *values.shape[1:]), fill)
    out[flat] = values
    return out.view(batch, slots, *values.shape[1:])


def scatter_clips(
    parts: list[torch.Tensor | None], groups: list[BudgetGroup], batch: int
) -> torch.Tensor | None:
    """Per-group (b_g, ...) tensors of the same trailing shape → (B, ...) in batch order; None
    when any part is None."""
    if any(p is None for p in parts):
        return None
    out = parts[0].new_empty((batch, *parts[0].shape[1:]))
    for part, group in zip(parts, groups, strict=True):
        out[group.index] = part
    return out


def mean_by_clips(
    values: list[torch.Tensor | None],
    groups: list[BudgetGroup],
    terms: list[torch.Tensor | float | None] | None = None,
):
    """Per-group means (scalar tensors, or None) → the batch's mean (None if none): weighted by
    how many terms each group's mean averages when every group says (`terms`), else by clips."""
    have = [i for i, v in enumerate(values) if v is not None]
    if not have:
        return None
    if terms is not None and all(terms[i] is not None for i in have):
        weights = [terms[i] for i in have]
    else:
        weights = [float(groups[i].index.numel()) for i in have]
    total = sum(weights)
    if not bool(total > 0):  # no group had a term: their means are all 0
        return values[have[0]]
    return sum(values[i] * (w / total) for i, w in zip(have, weights, strict=True))


def merge_diagnostics(
    parts: list[dict],
    groups: list[BudgetGroup],
    batch: int,
    frame_mask: torch.Tensor | None = None,
) -> dict:
    """Per-group reducer diagnostics → the batch's: scalars averaged over the groups' real frames
    (over clips without `frame_mask`), per-clip tensors (leading dimension the group's clips) put
    back in batch order; anything else is an error (it would describe only some clips)."""
    if len(parts) == 1:  # one group is the whole batch
        return dict(parts[0])
    sizes = [g.index.numel() for g in groups]
    if frame_mask is not None:
        sizes = [max(1, int(g.take(frame_mask).sum())) for g in groups]
    out: dict = {}
    for key in dict.fromkeys(k for part in parts for k in part):
        have = [(part[key], n) for part, n in zip(parts, sizes, strict=True) if key in part]
        values = [v for v, _ in have]
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            out[key] = sum(v * n for v, n in have) / sum(n for _, n in have)
        elif len(have) == len(parts) and all(
            isinstance(v, torch.Tensor) and v.dim() and v.shape[0] == n for v, n in have
        ):
            out[key] = scatter_clips(values, groups, batch)
        else:
            raise TypeError(
                f"reducer diagnostic {key!r} is neither a number nor a per-clip tensor in every "
                "budget group, so it cannot describe a batch of mixed clip lengths"
            )
    return out
