"""Frames → encoder blocks → in-ViT reducer → survivors-only blocks → connector → VisualTokens.

This is where the saving is made physical: after the reducer decides, pruned patches are removed
(not masked), the remaining blocks run on packed survivors, and the connector pools only surviving
windows, so each pruned window is one token fewer for every later stage.
"""

from __future__ import annotations

import torch
from torch import nn

from core import budget
from core.config.experiment import ExperimentConfig
from core.layers.packing import build_pack_plan
from core.layers.windows import WindowGrid
from core.models.connectors import build_connector
from core.models.vision import build_encoder
from core.models.visual_tokens import VisualTokens
from core.pruning import ReductionInputs, build_reducer


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
        win = self.windows
        enc = self.encoder
        pixels = pixel_values.flatten(0, 1)  # (B·F, 3, S, S)
        n_prune = self.num_pruned(f)
        diagnostics: dict = {}
        aux = None
        if n_prune == 0:
            x = enc(pixels)  # (B·F, N, D), every block on every patch
            grouped = win.gather(x).flatten(0, 1)  # (B·F·W, w², D)
            valid_slots = win.patch_valid.to(x.device).repeat(b * f, 1)
            kept_frame = torch.arange(b * f, device=x.device).repeat_interleave(win.num_windows)
            kept_window = torch.arange(win.num_windows, device=x.device).repeat(b * f)
        else:  # only encoders that host reducers (ViTs: embed + blocks + norm) get here
            x = emb = enc.embed(pixels)
            for block in enc.blocks[: self.prune_at + 1]:
                x = block(x)
            sel = self.reducer.select(
                ReductionInputs(
                    hidden=x.unflatten(0, (b, f)),
                    embeddings=emb.unflatten(0, (b, f)),
                    frame_mask=frame_mask,
                    windows=win,
                    n_prune=n_prune,
                    training=self.training,
                    step=step,
                    sample_keys=sample_keys,
                    object_mask=object_mask,
                )
            )
            aux = sel.aux_loss
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
            valid_slots = win.patch_valid.to(x.device)[kept_window]
            diagnostics = {
                "packed_rows": plan.rows,
                "packed_fill": plan.num_tokens / (plan.rows * plan.capacity),
                "scores": sel.scores,
                "keep": sel.keep,
                **sel.diagnostics,
            }
        features = self.connector(grouped, valid_slots)
        k = features.shape[0] // b
        features = features.view(b, k, -1)
        frame_index = (kept_frame % f).view(b, k)
        if self.frame_embedding is not None:
            features = features + self.frame_embedding[frame_index].to(features.dtype)
        valid = frame_mask.reshape(-1)[kept_frame].view(b, k)
        return VisualTokens(
            features=features,
            valid=valid,
            frame_index=frame_index,
            window_index=kept_window.view(b, k),
            num_frames=f,
            tokens_per_frame=win.num_windows,
            aux_loss=aux,
            diagnostics=diagnostics,
        )
