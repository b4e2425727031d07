"""Frames → encoder blocks → reducer → connector → VisualTokens, at the reducer's stage.

This is where the saving is made physical, so the analytic FLOPs are what runs:
- pre-ViT (fewer frames): only the planned frames are encoded, only their kept windows pooled;
- in-ViT, selecting (STTS and its baselines): after the reducer decides, pruned patches are removed
  (not masked), the remaining blocks run on packed survivors and the connector pools only surviving
  windows;
- in-ViT, merging (ToMe): windows are merged frame by frame after each block from `prune_at`, the
  later blocks run on fewer tokens with proportional attention, the connector pools the survivors;
- post-ViT: the encoder and the connector run on everything, the reducer selects or merges the
  clip's connector tokens down to K before the frame embedding and the fusion arch.
Every pruned or merged window is one token fewer for every later stage.
"""

from __future__ import annotations

import torch
from torch import nn

from core import budget
from core.config.experiment import ExperimentConfig
from core.layers.packing import build_pack_plan
from core.layers.windows import WindowGrid
from core.models.clip_slots import (
    BudgetGroup,
    budget_groups,
    is_uniform,
    mean_by_clips,
    merge_diagnostics,
    scatter_clips,
    slot_positions,
    to_slots,
    whole_batch,
)
from core.models.connectors import build_connector
from core.models.vision import build_encoder
from core.models.visual_tokens import VisualTokens
from core.pruning import ReductionInputs, Selection, Stage, build_reducer
from core.pruning.post_vit import PostViTInputs
from core.pruning.pre_vit import PreViTInputs


class VisionTower(nn.Module):
    def __init__(self, cfg: ExperimentConfig) -> None:
        super().__init__()
        self.encoder = build_encoder(cfg.vision, cfg.data.frame_size)
        self.frozen = cfg.vision.frozen
        self.windows = WindowGrid(self.encoder.grid, cfg.connector.window)
        self.max_frames = cfg.data.max_frames
        self.ratio = cfg.effective_ratio
        self.prune_from_frame = cfg.pruning.prune_from_frame
        self.prune_at = cfg.pruning.prune_at
        self.reducer = None
        if self.ratio > 0:
            self.reducer = build_reducer(cfg.pruning, self.encoder.dim, self.encoder.mlp_dim)
        self.connector = build_connector(cfg.connector, self.encoder.dim, cfg.lm.dim)
        self.frame_embedding = None
        if cfg.connector.frame_embedding:
            self.frame_embedding = nn.Parameter(torch.randn(cfg.data.max_frames, cfg.lm.dim) * 0.02)

    def num_pruned(self, frames: int) -> int:
        if self.reducer is None:
            return 0
        return budget.pruned_tokens(
            frames, self.windows.num_windows, self.ratio, self.prune_from_frame
        )

    def num_tokens(self, frames: int) -> int:
        return frames * self.windows.num_windows - self.num_pruned(frames)

    def train(self, mode: bool = True) -> VisionTower:
        super().train(mode)
        if self.frozen:
            self.encoder.eval()
        return self

    def forward(
        self,
        pixel_values: torch.Tensor,
        frame_mask: torch.Tensor,
        *,
        sample_keys: torch.Tensor | None = None,
        object_mask: torch.Tensor | None = None,
        step: int = 0,
    ) -> VisualTokens:
        b, f = frame_mask.shape
        n_keep = self.num_tokens(f)
        reducer = self.reducer if n_keep < f * self.windows.num_windows else None
        stage = None if reducer is None else reducer.stage
        groups = [whole_batch(frame_mask, n_keep)]
        if reducer is not None:  # each clip's own budget (see core.models.clip_slots)
            groups = budget_groups(
                frame_mask, self.windows.num_windows, self.ratio, self.prune_from_frame
            )
        context = {"frame_mask": frame_mask, "n_keep": n_keep, "training": self.training,
                   "step": step, "sample_keys": sample_keys}  # fmt: skip
        sizes, aux, diagnostics = None, None, {}
        if stage is Stage.PRE_VIT:
            grouped, slots, kept_frame, kept_window, diagnostics = self._planned(
                pixel_values, context, groups
            )
        elif stage is None or stage is Stage.POST_VIT:
            capture = stage is not None and reducer.needs_vit_attention
            grouped, slots, kept_frame, kept_window, qk = self._dense(
                pixel_values.flatten(0, 1), capture
            )
        elif reducer.merges_in_vit:
            grouped, slots, kept_frame, kept_window, sizes, diagnostics = self._merged(
                pixel_values.flatten(0, 1), frame_mask, groups
            )
        else:
            grouped, slots, kept_frame, kept_window, aux, diagnostics = self._pruned(
                pixel_values.flatten(0, 1), context, groups, object_mask
            )
        features = self.connector(grouped, slots)  # (T, D): the kept tokens of every clip
        if stage is Stage.POST_VIT:
            features, kept_frame, kept_window, sizes, diagnostics = self._post_vit(
                features.view(b, f, self.windows.num_windows, -1), qk, context, groups
            )
        if self.frame_embedding is not None:
            features = features + self.frame_embedding[kept_frame % f].to(features.dtype)
        if is_uniform(groups, n_keep) and features.shape[0] == b * n_keep:
            slots = lambda x, fill=0: x.view(b, n_keep, *x.shape[1:])  # noqa: E731 (clip-major)
        else:  # static K_F slots per clip, filler after each clip's own tokens
            flat = slot_positions(kept_frame // f, b, n_keep)
            slots = lambda x, fill=0: to_slots(x, flat, b, n_keep, fill)  # noqa: E731
        return VisualTokens(
            features=slots(features),
            valid=slots(frame_mask.reshape(-1)[kept_frame], False),
            frame_index=slots(kept_frame % f, f - 1),
            window_index=slots(kept_window),
            num_frames=f,
            tokens_per_frame=self.windows.num_windows,
            sizes=None if sizes is None else slots(sizes, 1.0),
            aux_loss=aux,
            diagnostics=diagnostics,
            real_frames=frame_mask.sum(1),
        )

    @staticmethod
    def _group_context(context: dict, group: BudgetGroup) -> dict:
        """The reducer's context for one budget group's clips."""
        keys = context["sample_keys"]
        return {  # without sample keys a clip is keyed by its index in the batch
            **context,
            "frame_mask": group.take(context["frame_mask"]),
            "n_keep": group.n_keep,
            "sample_keys": group.index if keys is None else group.take(keys),
        }

    def _post_vit(
        self, features: torch.Tensor, qk: tuple | None, context: dict, groups: list[BudgetGroup]
    ) -> tuple:
        """Post-ViT: the reducer on each budget group's connector tokens (B, F, P′, D) → the
        flat kept tokens of every clip, their global frame, window and size."""
        b, f = features.shape[:2]
        q, k = (None, None) if qk is None else (t.unflatten(0, (b, f)) for t in qk)
        outs = [
            self.reducer.reduce(
                PostViTInputs(
                    features=group.take(features),
                    windows=self.windows,
                    vit_q=group.take(q),
                    vit_k=group.take(k),
                    **self._group_context(context, group),
                )
            )
            for group in groups
        ]
        clip = torch.cat([g.index[:, None].expand_as(o.frame_index).reshape(-1)
                          for g, o in zip(groups, outs, strict=True)])  # fmt: skip
        diagnostics = {
            "scores": scatter_clips([o.scores for o in outs], groups, b),
            "keep": scatter_clips([o.keep for o in outs], groups, b),
            **merge_diagnostics(
                [o.diagnostics for o in outs], groups, b, frame_mask=context["frame_mask"]
            ),
        }
        return (
            torch.cat([o.features.flatten(0, 1) for o in outs]),
            clip * f + torch.cat([o.frame_index.reshape(-1) for o in outs]),
            torch.cat([o.window_index.reshape(-1) for o in outs]),
            torch.cat([o.sizes.reshape(-1) for o in outs]),
            diagnostics,
        )

    def _dense(self, pixels: torch.Tensor, capture: bool) -> tuple:
        """Every block on every patch → windows grouped for the connector; with `capture`, also the
        last block's q, k (frames, H, N, dh), detached (a post-ViT reducer's scores)."""
        win = self.windows
        qk = None
        if capture:
            x, q, k = self.encoder.forward_qk(pixels)
            qk = (q.detach(), k.detach())
        else:
            x = self.encoder(pixels)  # (B·F, N, D)
        m = x.shape[0]
        grouped = win.gather(x).flatten(0, 1)  # (B·F·W, w², D)
        slots = win.patch_valid.to(x.device).repeat(m, 1)
        kept_frame = torch.arange(m, device=x.device).repeat_interleave(win.num_windows)
        kept_window = torch.arange(win.num_windows, device=x.device).repeat(m)
        return grouped, slots, kept_frame, kept_window, qk

    def _planned(self, pixel_values: torch.Tensor, context: dict, groups: list) -> tuple:
        """Pre-ViT: encode only the planned frames, pool only their kept windows (each budget
        group planned at its own budget)."""
        win = self.windows
        b, f = context["frame_mask"].shape
        full = torch.zeros(b, f, win.num_windows, dtype=torch.bool, device=pixel_values.device)
        sources, keeps = [], []
        for group in groups:
            plan = self.reducer.plan(
                PreViTInputs(windows=win, **self._group_context(context, group))
            )
            rows = group.index[:, None]
            sources.append((rows * f + plan.frames).reshape(-1))  # clip-global encoded frames
            keeps.append(plan.keep.flatten(0, 1))
            full[rows, plan.frames] = plan.keep
        source, keep = torch.cat(sources), torch.cat(keeps).reshape(-1)
        grouped, slots, frame, window, _ = self._dense(pixel_values.flatten(0, 1)[source], False)
        return grouped[keep], slots[keep], source[frame[keep]], window[keep], {"keep": full}

    def _pruned(
        self,
        pixels: torch.Tensor,
        context: dict,
        groups: list[BudgetGroup],
        object_mask: torch.Tensor | None,
    ) -> tuple:
        """In-ViT selection: blocks up to prune_at, the reducer (per budget group), its soft
        blocks, then the remaining blocks on packed survivors."""
        enc, win = self.encoder, self.windows
        b, f = context["frame_mask"].shape
        x = emb = enc.embed(pixels)
        for block in enc.blocks[: self.prune_at + 1]:
            x = block(x)
        hidden, embeddings = x.unflatten(0, (b, f)), emb.unflatten(0, (b, f))
        parts = []
        for group in groups:
            ctx = self._group_context(context, group)
            parts.append(
                self.reducer.select(
                    ReductionInputs(
                        hidden=group.take(hidden),
                        embeddings=group.take(embeddings),
                        frame_mask=ctx["frame_mask"],
                        windows=win,
                        n_prune=f * win.num_windows - group.n_keep,
                        training=ctx["training"],
                        step=ctx["step"],
                        sample_keys=ctx["sample_keys"],
                        object_mask=group.take(object_mask),
                    )
                )
            )
        sel = (
            parts[0]
            if len(parts) == 1
            else merge_selections(parts, groups, b, context["frame_mask"])
        )
        start = self.prune_at + 1
        stop = start + self.reducer.hard_prune_delay
        bias = None if sel.key_bias is None else sel.key_bias.flatten(0, 1)
        for block in enc.blocks[start:stop]:
            x = block(x, key_bias=bias)
        keep = sel.keep.flatten(0, 1)  # (B·F, W)
        plan = build_pack_plan(keep, win)
        x = x[plan.token_frame, plan.token_patch]  # flat survivors (T, D)
        for block in enc.blocks[stop:]:
            x = block.forward_packed(x, plan)
        x = enc.norm(x)
        kept_frame, kept_window = keep.nonzero(as_tuple=True)
        keys = kept_frame * win.num_windows + kept_window
        rank = torch.searchsorted(keys, plan.token_frame * win.num_windows + plan.token_window)
        grouped = x.new_zeros(keys.numel() * win.slots, x.shape[-1])
        grouped[rank * win.slots + plan.token_slot] = x
        grouped = grouped.view(keys.numel(), win.slots, -1)
        slots = win.patch_valid.to(x.device)[kept_window]
        diagnostics = {
            "packed_rows": plan.rows,
            "packed_fill": plan.num_tokens / (plan.rows * plan.capacity),
            "scores": sel.scores,
            "keep": sel.keep,
            **sel.diagnostics,
        }
        return grouped, slots, kept_frame, kept_window, sel.aux_loss, diagnostics

    def _merged(self, pixels: torch.Tensor, frame_mask: torch.Tensor, groups: list) -> tuple:
        """In-ViT merging in one ViT pass (so every rank of a sharded model runs each block once
        per forward): after each block from prune_at the reducer merges windows frame by frame,
        every frame by the batch's schedule and each clip's own budget made in the last merge
        (`ToMe.clip_schedule`); later blocks add log(size) to their keys' logits when the reducer
        asks for proportional attention. A clip's padded frames' survivors are dropped. → flat
        survivors (T, w², D), their slot validity, clip-global frame, window, size, and the keep
        map {"keep": (B, F, P′)}."""
        enc, win, tome = self.encoder, self.windows, self.reducer
        b, f = frame_mask.shape
        p, slots = win.num_windows, win.slots
        kept = [0] * b
        for group in groups:
            for clip in group.index.tolist():
                kept[clip] = group.n_keep
        schedule = tome.clip_schedule(
            frame_mask, p, kept, self.num_tokens(f), len(enc.blocks) - self.prune_at
        ).to(pixels.device)
        x = win.gather(enc.embed(pixels))  # (M, P′, w², D)
        m, device = x.shape[0], x.device
        size = torch.ones(m, p, device=device)
        rep = torch.arange(p, device=device).expand(m, p)
        alive = torch.ones(m, p, dtype=torch.bool, device=device)
        for i, block in enumerate(enc.blocks):
            bias = None  # sizes are all 1 until the first merge
            if i > self.prune_at and tome.options.prop_attn:
                bias = size.log().repeat_interleave(slots, dim=1)
            flat = x.flatten(1, 2)
            if i < self.prune_at:
                x = block(flat, key_bias=bias).view_as(x)
                continue
            flat, _, k = block.forward_qk(flat, key_bias=bias)
            x = flat.view(m, -1, slots, flat.shape[-1])
            metric = k.mean(1).view(m, -1, slots, k.shape[-1]).mean(2)  # window mean of head mean
            r = schedule[i - self.prune_at]  # (M,)
            x, size, rep, alive = tome.merge(x, size, rep, metric, r)
        # padded frames' survivors are not the clip's (a clip without a real frame keeps all,
        # masked downstream, as its padded budget says)
        real = (frame_mask | ~frame_mask.any(1, keepdim=True)).reshape(-1)
        alive = alive & real[:, None]
        order = torch.argsort(torch.where(alive, rep, rep + p), dim=1)  # raster order, dead last
        x = x.gather(1, order[:, :, None, None].expand_as(x))
        rep, size, alive = rep.gather(1, order), size.gather(1, order), alive.gather(1, order)
        x = enc.norm(x[alive])  # (T, w², D)
        kept_frame = torch.arange(m, device=device)[:, None].expand_as(rep)[alive]
        keep = torch.zeros(m, p, dtype=torch.bool, device=device)
        keep.scatter_(1, rep, alive)
        valid_slots = win.patch_valid.to(device)[rep[alive]]
        return x, valid_slots, kept_frame, rep[alive], size[alive], {"keep": keep.view(b, f, p)}


def merge_selections(
    parts: list[Selection], groups: list[BudgetGroup], batch: int, frame_mask: torch.Tensor
) -> Selection:
    """Per-budget-group selections → one for the batch: the aux loss as the mean over all its
    terms (`Selection.aux_terms`), scalar diagnostics over the real frames."""
    return Selection(
        keep=scatter_clips([p.keep for p in parts], groups, batch),
        key_bias=scatter_clips([p.key_bias for p in parts], groups, batch),
        aux_loss=mean_by_clips([p.aux_loss for p in parts], groups, [p.aux_terms for p in parts]),
        aux_terms=None
        if any(p.aux_terms is None for p in parts)
        else sum(p.aux_terms for p in parts),
        scores=scatter_clips([p.scores for p in parts], groups, batch),
        diagnostics=merge_diagnostics([p.diagnostics for p in parts], groups, batch, frame_mask),
    )
