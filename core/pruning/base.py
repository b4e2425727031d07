"""One interface for every token reducer.

A reducer acts at a `stage` (where its decision removes tokens: inside the ViT, after it, or inside
the LLM) and reports it in its display metadata. Its budget is always expressed as visual tokens
removed before the LLM input (`core.budget.pruned_tokens`), so methods are compared at equal
LLM-token counts. The base class is the in-ViT contract: `select` after block `prune_at`, and the
`token_flow` that the analytic FLOPs sum follows.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from core.config.pruning import PruningConfig
from core.extensions import Extension, TokenFlow
from core.layers.windows import WindowGrid
from core.registry import VISION_ENCODERS

if TYPE_CHECKING:
    from core.config.experiment import ExperimentConfig

PROTECT = 1e4  # priority offset: protected windows are pruned only after every unprotected one
PADDING = -1e9  # padded frames' windows are pruned first (they never reach the LLM as real tokens)


class Stage(enum.StrEnum):
    PRE_VIT = "pre_vit"  # before the encoder (e.g. fewer frames): the ViT saves too
    IN_VIT = "in_vit"
    POST_VIT = "post_vit"
    IN_LLM = "in_llm"


@dataclass
class ReductionInputs:
    """What an in-ViT reducer may look at, all per clip: (B, F, ...)."""

    hidden: torch.Tensor  # (B, F, N, D) after block prune_at
    embeddings: torch.Tensor  # (B, F, N, D) ViT input embeddings (patch + position)
    frame_mask: torch.Tensor  # (B, F) bool
    windows: WindowGrid
    n_prune: int  # windows to remove per clip
    training: bool
    step: int = 0
    sample_keys: torch.Tensor | None = None  # (B,) int64 stable per clip
    object_mask: torch.Tensor | None = None  # (B, F, S, S) bool (synthetic ground truth)


@dataclass
class Selection:
    keep: torch.Tensor  # (B, F, W) bool, exactly F·W − n_prune True per clip
    key_bias: torch.Tensor | None = None  # (B, F, N) additive key bias for the delayed blocks
    aux_loss: torch.Tensor | None = None
    aux_terms: torch.Tensor | float | None = None  # terms aux_loss averages (combines groups)
    scores: torch.Tensor | None = None  # (B, F, W) method scores (diagnostics)
    diagnostics: dict[str, Any] = field(default_factory=dict)


class TokenReducer(Extension, nn.Module):
    """Base class of the in-ViT reducers.

    A registered subclass declares `display` (core.extensions.Display), `flops(cfg, flow)` (its
    scoring cost; it runs only when `flow.reduced`), optionally its own `Config`, and implements
    `select`; the class attributes below are its capabilities, read by the config checks.
    """

    stage: ClassVar[Stage] = Stage.IN_VIT
    trained: ClassVar[bool] = False  # has learned parameters (the optimiser's reducer group)
    is_reference: ClassVar[bool] = False  # the unpruned model: removes nothing whatever the ratio
    needs_divisible_grid: ClassVar[bool] = False
    protects_first_frame: ClassVar[bool] = False
    needs_ground_truth: ClassVar[bool] = False
    hard_prune_delay: ClassVar[int] = 0  # blocks between scoring (after prune_at) and hard removal
    merges_in_vit: ClassVar[bool] = False  # merges block by block (`schedule`, `merge`)
    # why `kept_per_frame` means nothing to this reducer's ViT counts ("": a keep mask, which uses
    # it); a reducer stating one refuses it and gives its counts in `stage_flow`
    kept_per_frame_refusal: ClassVar[str] = ""

    def __init__(self, cfg: PruningConfig, vit_dim: int = 0, vit_mlp_dim: int = 0) -> None:
        super().__init__()
        self.cfg = cfg
        self.options = cfg.options  # this method's own settings (pruning.<method>.*)

    def select(self, inputs: ReductionInputs) -> Selection:
        """Decide which windows survive; subclasses override."""
        raise TypeError(f"{type(self).__name__} does not define select()")

    @classmethod
    def warnings(cls, stats: dict[str, float]) -> list[str]:
        """Problems visible in the evaluation's mean `reducer/*` statistics, for the cell's
        result (e.g. a learned scorer that saturated); none by default."""
        return []

    @classmethod
    def token_flow(
        cls,
        cfg: ExperimentConfig,
        frames: int,
        text_len: int,
        vocab: int,
        kept_per_frame: list[int] | None = None,
    ) -> TokenFlow:
        """Tokens per stage for an in-ViT reducer.

        The first `prune_at + 1 + hard_prune_delay` encoder blocks see all N patches of every
        frame; later blocks see only the kept patches, K·w² in all (divisible grid; ragged grids
        use the mean window size). How they are spread over frames sets the Σ n_f² attention
        term: `kept_per_frame` gives it, by default the kept windows are spread as evenly as
        integers allow (the real split is data-dependent). The connector pools the K kept windows
        and every LLM layer carries them.

        A reducer with a `kept_per_frame_refusal` refuses `kept_per_frame` and returns its
        `stage_flow`.
        """
        if cls.kept_per_frame_refusal:
            refuse_kept_per_frame(cfg, kept_per_frame, cls.kept_per_frame_refusal)
            return cls.stage_flow(cfg, frames, text_len, vocab)
        v, c, p = cfg.vision, cfg.connector, cfg.pruning
        depth = VISION_ENCODERS.get(v.type).num_blocks(v)
        n, per_frame = cfg.grid**2, cfg.tokens_per_frame
        kept = cfg.kept_tokens(frames)
        reduced = kept < frames * per_frame
        if kept_per_frame is not None and not reduced:
            raise ValueError(
                "kept_per_frame was given but nothing is pruned (pruning.method="
                f"{p.method}, ratio {p.ratio}, {frames} frame(s)). Fix: leave kept_per_frame unset."
            )
        blocks = [[n] * frames for _ in range(depth)]
        if reduced:
            n_full = min(depth, p.prune_at + 1 + cls.hard_prune_delay)
            layout = _kept_layout(frames, kept, n, per_frame, c.window, kept_per_frame)
            blocks = blocks[:n_full] + [layout] * (depth - n_full)
        return clip_flow(cfg, frames, text_len, vocab, blocks, kept)

    @classmethod
    def stage_flow(cls, cfg: ExperimentConfig, frames: int, text_len: int, vocab: int) -> TokenFlow:
        """Tokens per stage of a reducer with a `kept_per_frame_refusal`; such a reducer overrides
        this."""
        raise TypeError(f"{cls.__name__} states a kept_per_frame_refusal but no stage_flow()")


def refuse_kept_per_frame(cfg: ExperimentConfig, given: list[int] | None, why: str) -> None:
    """A reducer whose ViT counts do not come from a keep mask refuses `kept_per_frame`."""
    if given is not None:
        raise ValueError(
            f"kept_per_frame was given but pruning.method={cfg.pruning.method} {why}. Fix: leave "
            "kept_per_frame unset."
        )


def clip_flow(
    cfg: ExperimentConfig,
    frames: int,
    text_len: int,
    vocab: int,
    vit_blocks: list[list[int]],
    connector_tokens: int,
) -> TokenFlow:
    """The TokenFlow of one clip whose every LLM layer carries the K kept tokens."""
    kept, per_frame = cfg.kept_tokens(frames), cfg.tokens_per_frame
    return TokenFlow(
        frames=frames,
        text_len=text_len,
        vocab=vocab,
        patches=cfg.grid**2,
        windows=per_frame,
        vit_blocks=vit_blocks,
        connector_tokens=connector_tokens,
        llm_visual=[kept] * cfg.lm.n_layers,
        reduced=kept < frames * per_frame,
    )


def _kept_layout(
    frames: int, kept: int, n: int, per_frame: int, window: int, given: list[int] | None
) -> list[int]:
    """Kept patches of each frame: `given`, or kept windows spread evenly (see token_flow)."""
    if per_frame * window**2 == n:  # divisible grid: every window holds w² patches
        kept_patches, unit, count = kept * window**2, window**2, kept
    else:  # ragged edge windows: the mean window size (only `random` allows this)
        kept_patches = round(kept * n / per_frame)
        unit, count = 1, kept_patches
    if given is None:
        base, extra = divmod(count, frames)
        return [(base + (1 if f < extra else 0)) * unit for f in range(frames)]
    layout = [int(x) for x in given]
    if len(layout) != frames or sum(layout) != kept_patches or min(layout) < 0:
        raise ValueError(
            f"kept_per_frame={given}: needs {frames} non-negative per-frame patch counts summing "
            f"to the {kept_patches} kept patches. Fix: pass the kept patches of each frame, or "
            "leave it unset for an even spread."
        )
    return layout


def prune_lowest(
    priority: torch.Tensor, n_prune: int, tie_break: torch.Tensor | None = None
) -> torch.Tensor:
    """priority (B, F, W) → keep mask pruning the n_prune lowest per clip.

    Exact ties are broken by `tie_break` (B, F·W) keys (random per clip: `tie_keys`), never by
    raster order; without it, by position (stable)."""
    b, f, w = priority.shape
    flat = priority.reshape(b, f * w)
    if tie_break is None:
        order = torch.argsort(flat, dim=1, stable=True)
    else:  # lexicographic (priority, tie_break): shuffle by the keys, then a stable sort
        shuffle = torch.argsort(tie_break.to(flat.device), dim=1)
        order = shuffle.gather(1, torch.argsort(flat.gather(1, shuffle), dim=1, stable=True))
    keep = torch.ones_like(flat, dtype=torch.bool)
    keep.scatter_(1, order[:, :n_prune], False)
    return keep.view(b, f, w)


def tie_keys(inputs: ReductionInputs, seed: int) -> torch.Tensor:
    """(B, F·W) random keys per clip from (seed, the clip's key, the step; −1 at evaluation): the
    same clip at the same step always gets the same keys, whatever else is in its batch."""
    b, f = inputs.frame_mask.shape
    n = f * inputs.windows.num_windows
    keys = inputs.sample_keys.tolist() if inputs.sample_keys is not None else list(range(b))
    step = inputs.step if inputs.training else -1
    draws = [torch.rand(n, generator=clip_generator(seed, int(k), step)) for k in keys]
    return torch.stack(draws).to(inputs.frame_mask.device)


def clip_generator(seed: int, key: int, step: int) -> torch.Generator:
    """A CPU generator seeded by (seed, clip key, step) through a stable hash."""
    blob = f"{seed}:{key}:{step}".encode()
    value = int.from_bytes(hashlib.blake2b(blob, digest_size=8).digest(), "little") & (2**63 - 1)
    return torch.Generator().manual_seed(value)


def padding_priority(frame_mask: torch.Tensor, num_windows: int) -> torch.Tensor:
    """(B, F, W): PADDING on padded frames, 0 elsewhere."""
    pad = (~frame_mask).to(torch.float32)[:, :, None].expand(-1, -1, num_windows)
    return pad * PADDING


def redundancy_priority(
    sim: torch.Tensor, protected: torch.Tensor, frame_mask: torch.Tensor
) -> torch.Tensor:
    """(B, F, W) priority: the most similar windows are pruned first, protected ones (1.0) only
    after every unprotected one, padded frames' windows before anything."""
    return -sim + PROTECT * protected + padding_priority(frame_mask, sim.shape[-1])


def window_vectors(x: torch.Tensor, windows: WindowGrid) -> torch.Tensor:
    """(B, F, N, D) → (B, F, W, w²·D): each window's patches concatenated (zeros in ragged slots)."""
    return windows.gather(x).flatten(-2)


def neighbour_cosine_flops(cfg: ExperimentConfig, flow: TokenFlow) -> int:
    """One cosine pass between w²·D window vectors of neighbouring frames: 2·P′·w²·D per frame
    (the normalisation is not counted)."""
    return flow.frames * 2 * flow.windows * cfg.connector.window**2 * cfg.vision.dim


def neighbour_cosine(vec: torch.Tensor) -> torch.Tensor:
    """cos(window t, same window t−1) for t ≥ 1; frame 0 gets 0. vec: (B, F, W, E)."""
    v = torch.nn.functional.normalize(vec.float(), dim=-1)
    sim = (v[:, 1:] * v[:, :-1]).sum(-1)
    return torch.cat([torch.zeros_like(sim[:, :1]), sim], dim=1)
