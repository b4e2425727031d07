"""Our ViT: SigLIP-shaped (conv patch embedding, learned positions, pre-LN blocks, GELU-tanh MLP).

It hosts in-ViT token reducers: blocks run densely on every patch of every frame (frames folded into
the batch), optionally with an additive per-key bias (STTS's soft score; ToMe's log-size proportional
attention), or packed on survivors only. `forward_qk` also returns a block's queries and keys (what
SDPA consumed, no attention matrix), from which ToMe's merge metric and the post-ViT reducers'
attention scores are computed beside the fused attention call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from core.config.vision import VisionConfig
from core.extensions import EncoderCost, Extension, TokenFlow
from core.layers.packing import PackPlan
from core.registry import VISION_ENCODERS

if TYPE_CHECKING:
    from core.config.experiment import ExperimentConfig


def encoded_frames(flow: TokenFlow) -> int:
    """Frames the encoder runs on: those the blocks see (fewer than the clip's when a pre-ViT
    reducer drops frames), or every frame of a block-less encoder."""
    return len(flow.vit_blocks[0]) if flow.vit_blocks else flow.frames


def patch_embed_flops(cfg: ExperimentConfig, flow: TokenFlow) -> int:
    """A linear map of every 3p² patch to D: 2·N·3p²·D per encoded frame."""
    v = cfg.vision
    return encoded_frames(flow) * 2 * flow.patches * 3 * v.patch_size**2 * v.dim


class ViTAttention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def _split(self, qkv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        q, k, v = qkv.unflatten(-1, (3, self.heads, -1)).unbind(-3)
        return q.transpose(-3, -2), k.transpose(-3, -2), v.transpose(-3, -2)  # (..., H, n, dh)

    def forward(self, x: torch.Tensor, key_bias: torch.Tensor | None = None) -> torch.Tensor:
        """x: (frames, n, D); key_bias: (frames, n) added to every query's logit for that key."""
        return self.attend(x, key_bias)[0]

    def attend(
        self, x: torch.Tensor, key_bias: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """→ (output, q, k), q and k (frames, H, n, dh) as the fused attention call consumed them."""
        q, k, v = self._split(self.qkv(x))
        mask = None if key_bias is None else key_bias[:, None, None, :].to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.proj(out.transpose(-3, -2).flatten(-2)), q, k

    def forward_packed(self, x: torch.Tensor, plan: PackPlan) -> torch.Tensor:
        """x: (T, D) flat survivors; attention confined to each source frame via the plan's mask."""
        q, k, v = self._split(plan.pack(self.qkv(x)))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=plan.attn_mask)
        return self.proj(plan.unpack(out.transpose(-3, -2).flatten(-2)))


class ViTBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = ViTAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.fc1 = nn.Linear(dim, mlp_dim)
        self.fc2 = nn.Linear(mlp_dim, dim)

    def mlp(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))

    def forward(self, x: torch.Tensor, key_bias: torch.Tensor | None = None) -> torch.Tensor:
        return self._run(x, key_bias)[0]

    def forward_qk(
        self, x: torch.Tensor, key_bias: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The block's output and its attention's q, k (frames, H, n, dh)."""
        return self._run(x, key_bias)

    def _run(
        self, x: torch.Tensor, key_bias: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out, q, k = self.attn.attend(self.norm1(x), key_bias)
        x = x + out
        return x + self.mlp(self.norm2(x)), q, k

    def forward_packed(self, x: torch.Tensor, plan: PackPlan) -> torch.Tensor:
        x = x + self.attn.forward_packed(self.norm1(x), plan)
        return x + self.mlp(self.norm2(x))

    @staticmethod
    def flops(tokens_per_frame: list[int], dim: int, mlp_dim: int) -> int:
        """Frames holding n_f tokens each (attention stays within a frame):
        Σ_f 8n_fD² (q, k, v, o) + 4n_f²D (QKᵀ, AV) + 4n_fDM (MLP)."""
        return sum(
            8 * n * dim * dim + 4 * n * n * dim + 4 * n * dim * mlp_dim for n in tokens_per_frame
        )


@VISION_ENCODERS.register("vit")
class ViT(Extension, nn.Module):
    """Frames (frames, 3, S, S) → patch features (frames, N, D), N = (S/p)²."""

    hosts_reducers = True

    @staticmethod
    def num_blocks(cfg: VisionConfig) -> int:
        return cfg.depth

    @classmethod
    def flops(cls, cfg: ExperimentConfig, flow: TokenFlow) -> EncoderCost:
        """Conv patch embedding on every patch, then each block on the tokens the flow gives it."""
        v = cfg.vision
        blocks = [ViTBlock.flops(tokens, v.dim, v.mlp_dim) for tokens in flow.vit_blocks]
        return EncoderCost(patch_embed_flops(cfg, flow), blocks)

    def __init__(self, cfg: VisionConfig, image_size: int) -> None:
        super().__init__()
        self.patch_size = cfg.patch_size
        self.grid = image_size // cfg.patch_size
        self.dim = cfg.dim
        self.depth = cfg.depth
        self.mlp_dim = cfg.mlp_dim
        self.patch_embed = nn.Conv2d(3, cfg.dim, cfg.patch_size, cfg.patch_size)
        self.pos_embed = nn.Parameter(torch.randn(self.grid * self.grid, cfg.dim) * 0.02)
        self.blocks = nn.ModuleList(
            ViTBlock(cfg.dim, cfg.heads, cfg.mlp_dim) for _ in range(cfg.depth)
        )
        self.norm = nn.LayerNorm(cfg.dim, eps=1e-6)

    def embed(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(pixels).flatten(2).transpose(1, 2)
        return x + self.pos_embed

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.embed(pixels)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def forward_qk(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Like `forward`, plus the last block's attention q, k (frames, H, N, dh)."""
        x = self.embed(pixels)
        for block in self.blocks[:-1]:
            x = block(x)
        x, q, k = self.blocks[-1].forward_qk(x)
        return self.norm(x), q, k
