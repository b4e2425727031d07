"""ToMe: token merging inside the ViT by bipartite soft matching (Bolya et al., ICLR 2023).

Follows the paper and its timm patch: the merge metric is the block's attention keys averaged over
heads; tokens alternate into sets A and B; every A token finds its most cosine-similar B token and
the r A tokens with the most similar partners are folded into them by a size-weighted average (sizes
add); proportional attention adds log(size) to every key's logit in the later blocks
(`pruning.tome.prop_attn`, on by default as in the timm patch); the schedule removes a near-constant
r per block; frames are merged independently (a per-frame image ViT, as SigLIP).

Changes, each forced by this stack:
- the merge unit is the connector window (w×w patches), so a merged token is still one window the
  connector pools into one LLM token and the clip keeps exactly K windows: a window's metric is the
  mean of its patches' head-averaged keys, and merging averages two windows slot by slot (with w = 1
  it is ToMe on patches);
- the merge sits after a block's MLP (using that block's keys) instead of between its attention and
  MLP, so every block runs at one token count and the analytic FLOPs are what runs (ToMe also saves
  that one MLP); merges follow blocks `prune_at`..last;
- the budget K is per clip: its r real frames keep ⌊K/r⌋ or ⌈K/r⌉ windows (earlier frames the larger), the
  difference made in the last merge; a frame keeps at least one window;
- a clip's budget comes from its real frames (`core.models.clip_slots`): every frame merges by
  the batch's schedule (one ViT pass) and each clip's own budget is made in the last merge, over
  its real frames; a frame cannot keep more than the schedule leaves it before that merge, so a
  one-frame clip in a video batch keeps fewer than its budget; padded frames' survivors are
  dropped before the connector;
- the surviving windows of a frame are put back in raster order of their representatives (ToMe's B
  token) before the connector.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch
import torch.nn.functional as F

from core import budget
from core.config._build import fail
from core.extensions import Display, TokenFlow
from core.pruning.base import TokenReducer, clip_flow
from core.registry import REDUCERS, VISION_ENCODERS

if TYPE_CHECKING:
    from core.config.experiment import ExperimentConfig


@dataclass
class ToMeConfig:
    """`pruning.tome.*`."""

    prop_attn: bool = True  # add log(size) to the attention logits of merged keys


def frame_targets(frames: int, kept: int) -> list[int]:
    """Windows each frame position keeps: K spread evenly, earlier frames taking the remainder."""
    base, extra = divmod(kept, frames)
    return [base + (1 if f < extra else 0) for f in range(frames)]


def fewest_left(n: int, points: int) -> int:
    """Windows left of n after `points` merges of at most half each."""
    for _ in range(points):
        n -= n // 2
    return n


def merge_schedule(per_frame: int, frames: int, kept: int, points: int) -> list[int]:
    """Windows merged per frame at each merge point by the frames keeping ⌈K/F⌉; the others
    merge one more at the last point. Near-constant r (the remainder early), never more than half
    of a frame's windows at once (bipartite matching folds each A token at most once), raised
    where a later point could not catch up. Raises ValueError when no schedule reaches K."""
    targets = frame_targets(frames, kept)
    high, low = targets[0], targets[-1]
    if low < 1:
        raise ValueError(f"{kept} kept windows over {frames} frames leave a frame empty")
    if fewest_left(per_frame, points) > low:
        raise ValueError(
            f"ToMe cannot merge {per_frame} windows down to {low} in {points} merge points "
            "(each merges at most half of a frame's windows)"
        )
    n, schedule = per_frame, []
    for j in range(points):
        r = -(-(n - low) // (points - j))
        while fewest_left(n - r, points - j - 1) > low:
            r += 1
        schedule.append(min(r, n // 2))
        n -= schedule[-1]
    if low < high:  # the larger frames skip one merge: the last one, moved to the end if needed
        if schedule[-1] == 0:
            schedule[max(j for j, r in enumerate(schedule) if r > 0)] -= 1
            schedule[-1] = 1
        schedule[-1] -= 1
    return schedule


@REDUCERS.register("tome")
class ToMe(TokenReducer):
    """Bipartite soft matching of windows, frame by frame, after every block from `prune_at`."""

    Config = ToMeConfig
    display = Display(label="ToMe", short="tome", order=45)
    merges_in_vit: ClassVar[bool] = True
    needs_divisible_grid = True
    kept_per_frame_refusal = "merges: its counts follow its schedule"

    @staticmethod
    def points(cfg: ExperimentConfig) -> int:
        """Merge points: after blocks prune_at..depth−1."""
        depth = VISION_ENCODERS.get(cfg.vision.type).num_blocks(cfg.vision)
        return depth - cfg.pruning.prune_at

    @classmethod
    def check_experiment(cls, cfg: ExperimentConfig) -> None:
        """The batch's schedule must exist at data.max_frames, and every shorter clip's own
        budget must be reachable in its last merge."""
        frames, per_frame, kept = cfg.data.max_frames, cfg.tokens_per_frame, cfg.kept_tokens()
        if frames < 2 or kept >= frames * per_frame:
            return
        p = cfg.pruning
        try:
            for real in range(1, frames + 1):
                mask = torch.arange(frames)[None] < real
                own = budget.clip_kept_tokens(
                    [real], frames, per_frame, p.ratio, p.prune_from_frame
                )
                cls.clip_schedule(mask, per_frame, own, kept, cls.points(cfg))
        except ValueError as exc:
            fail(
                "pruning.ratio",
                cfg.pruning.ratio,
                f"{exc} (vision.depth={cfg.vision.depth}, pruning.prune_at={cfg.pruning.prune_at})",
                "lower pruning.ratio or pruning.prune_at, or use a deeper ViT",
            )

    @classmethod
    def window_counts(cls, cfg: ExperimentConfig, frames: int) -> list[int]:
        """Windows per frame (the ⌈K/F⌉ frames) entering each merge point."""
        kept = cfg.kept_tokens(frames)
        n, counts = cfg.tokens_per_frame, []
        for r in merge_schedule(n, frames, kept, cls.points(cfg)):
            counts.append(n)
            n -= r
        return counts

    @classmethod
    def flops(cls, cfg: ExperimentConfig, flow: TokenFlow) -> int:
        """Per frame and merge point with n windows: the A·Bᵀ cosine matrix of the head-averaged
        keys, 2·⌈n/2⌉·⌊n/2⌋·d_h (window means and the weighted averages are not products)."""
        dh = cfg.vision.dim // cfg.vision.heads
        return sum(
            flow.frames * 2 * (-(-n // 2)) * (n // 2) * dh
            for n in cls.window_counts(cfg, flow.frames)
        )

    @classmethod
    def stage_flow(cls, cfg: ExperimentConfig, frames: int, text_len: int, vocab: int) -> TokenFlow:
        """Blocks up to prune_at see every patch; block prune_at + 1 + j sees the windows left
        after j + 1 merges (×w² patches); the connector and the LLM see the K kept windows."""
        n = cfg.grid**2
        depth = VISION_ENCODERS.get(cfg.vision.type).num_blocks(cfg.vision)
        kept = cfg.kept_tokens(frames)
        blocks = [[n] * frames for _ in range(depth)]
        if kept < frames * cfg.tokens_per_frame:
            slots = cfg.connector.window**2
            for j, count in enumerate(cls.window_counts(cfg, frames)[1:]):
                blocks[cfg.pruning.prune_at + 1 + j] = [count * slots] * frames
        return clip_flow(cfg, frames, text_len, vocab, blocks, kept)

    def schedule(self, frames: int, per_frame: int, kept: int, points: int) -> torch.Tensor:
        """(points, frames) windows each frame position merges at each point."""
        mask = torch.ones(1, frames, dtype=torch.bool)
        return self.clip_schedule(mask, per_frame, [kept], kept, points)

    @staticmethod
    def clip_schedule(
        frame_mask: torch.Tensor, per_frame: int, kept: list[int], batch_kept: int, points: int
    ) -> torch.Tensor:
        """(points, B·F) windows each frame merges at each point: the batch's schedule (K_F =
        `batch_kept` over its F frames) at every point but the last, where each clip's real
        frames (all F for a clip without one) reach its own budget kept[i] spread evenly over
        them (earlier ones the remainder). A frame cannot keep more than the batch's schedule
        leaves it before the last merge, so a clip whose even share is larger (a one-frame clip
        in a video batch) keeps that many per frame, fewer than its budget; padded frames
        follow the frames keeping ⌈K_F/F⌉ (their survivors are dropped)."""
        b, f = frame_mask.shape
        base = merge_schedule(per_frame, f, batch_kept, points)
        before_last = per_frame - sum(base[:-1])
        out = torch.tensor(base).view(points, 1, 1).repeat(1, b, f)
        high = frame_targets(f, batch_kept)[0]
        out[-1] = before_last - high  # padded frames (and the frames keeping ⌈K_F/F⌉)
        for clip, real in enumerate(frame_mask.tolist()):
            positions = [i for i, is_real in enumerate(real) if is_real] or list(range(f))
            for i, t in zip(positions, frame_targets(len(positions), kept[clip]), strict=True):
                out[-1, clip, i] = before_last - min(t, before_last)
        if int(out[-1].max()) > before_last // 2:
            raise ValueError(
                f"ToMe cannot merge {int(out[-1].max())} of {before_last} windows in one merge "
                "(at most half)"
            )
        return out.view(points, b * f)

    def match(self, metric: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """metric (M, n, E) → for each A token (even positions): the cosine to its most similar B
        token (odd positions) and that token's index in B, both (M, ⌈n/2⌉)."""
        m = F.normalize(metric.float(), dim=-1)
        scores = m[:, ::2] @ m[:, 1::2].transpose(-1, -2)
        return scores.max(-1)

    def merge(
        self,
        x: torch.Tensor,
        size: torch.Tensor,
        rep: torch.Tensor,
        metric: torch.Tensor,
        r: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Merge r[i] windows of frame i (r: (M,) long).

        x (M, n, w², D) windows, size (M, n) original windows each stands for, rep (M, n) its
        representative window, metric (M, n, E). Returns x, size, rep (M, n − min r, ...) as
        [unmerged A in order | B] and `alive` (M, n − min r): False where a frame that merged
        more than min r has nothing left (only the last merge point may differ per frame)."""
        best, dst = self.match(metric)
        m, n_a = best.shape
        order = torch.argsort(best, dim=-1, descending=True, stable=True)
        ranks = torch.arange(n_a, device=x.device).expand(m, n_a)
        rank = torch.empty_like(order).scatter_(-1, order, ranks)
        merged = rank < r.to(x.device)[:, None]  # (M, n_A)
        x_a, x_b = x[:, ::2], x[:, 1::2]
        s_a, s_b = size[:, ::2], size[:, 1::2]
        w_a = (s_a * merged).to(x.dtype)
        idx = dst[:, :, None, None].expand_as(x_a)
        total = s_b.to(x.dtype).scatter_add(1, dst, w_a)
        x_b = (x_b * s_b[..., None, None].to(x.dtype)).scatter_add(
            1, idx, x_a * w_a[..., None, None]
        )
        x_b = x_b / total[..., None, None]
        keep_a = n_a - int(r.min())
        stay = torch.argsort(merged.to(torch.int8), dim=-1, stable=True)[:, :keep_a]
        alive_a = ~merged.gather(1, stay)
        x = torch.cat([x_a.gather(1, stay[:, :, None, None].expand(-1, -1, *x.shape[2:])), x_b], 1)
        size = torch.cat([s_a.gather(1, stay), total.to(size.dtype)], 1)
        rep = torch.cat([rep[:, ::2].gather(1, stay), rep[:, 1::2]], 1)
        alive_b = torch.ones(m, x_b.shape[1], dtype=torch.bool, device=alive_a.device)
        alive = torch.cat([alive_a, alive_b], 1)  # every A token may have merged (keep_a = 0)
        return x, size, rep, alive
