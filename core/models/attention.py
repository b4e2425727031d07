"""Transformer building blocks shared by the language model and every fusion arch.

RMSNorm, rotary position embedding (RoPE) on explicit position ids, grouped-query attention over
`scaled_dot_product_attention` (causal fast path or a BOOLEAN mask, never a float S×S mask), a
SwiGLU MLP, the causal + key-padding mask helper, and `AttentionProbe`: the head-averaged attention
row of ONE query per clip, computed beside the SDPA call from the q and k that call already uses
(what in-LLM reducers score with; the model's attention stays on the fast path). Parameter names follow Qwen3's layout
(`q_proj`, `q_norm`, `gate_proj`, ...) so a Qwen3 checkpoint maps onto them by name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

Rope = tuple[torch.Tensor, torch.Tensor]


class RMSNorm(nn.Module):
    """y = w · x / rms(x), computed in float32 and cast back (as Qwen3 does)."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.to(x.dtype)


class RotaryEmbedding(nn.Module):
    """cos/sin tables for RoPE (half-split layout) at explicit integer positions."""

    def __init__(self, head_dim: int, theta: float) -> None:
        super().__init__()
        if head_dim % 2:
            raise ValueError(
                f"RoPE needs an even head_dim, got {head_dim}. Fix: change lm.dim/n_heads."
            )
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
        self.register_buffer("inv_freq", inv_freq.float(), persistent=False)

    def forward(self, position_ids: torch.Tensor) -> Rope:
        """position_ids (S,) or (B, S) → cos, sin of shape (S, hd) or (B, 1, S, hd), float32."""
        angles = position_ids.float()[..., None] * self.inv_freq.to(position_ids.device)
        emb = torch.cat((angles, angles), dim=-1)
        cos, sin = emb.cos(), emb.sin()
        if position_ids.dim() == 2:
            cos, sin = cos[:, None], sin[:, None]
        return cos, sin


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x: torch.Tensor, rope: Rope) -> torch.Tensor:
    """Rotate x (B, H, S, hd) by the angles in `rope`."""
    cos, sin = (t.to(x.dtype) for t in rope)
    return x * cos + _rotate_half(x) * sin


def causal_with_key_padding(key_valid: torch.Tensor) -> torch.Tensor:
    """(B, S) bool key validity → (B, 1, S, S) bool mask: causal AND valid key.

    A query row with no allowed key (a padded token with only padded keys before it) gets its own
    diagonal, so softmax never sees an empty row; real queries never see padded keys. Build once
    per forward and share it across layers.
    """
    if key_valid.dtype != torch.bool or key_valid.dim() != 2:
        raise ValueError(
            f"key_valid must be a (B, S) bool tensor, got {key_valid.dtype} "
            f"{tuple(key_valid.shape)}"
        )
    s = key_valid.shape[1]
    causal = torch.ones(s, s, dtype=torch.bool, device=key_valid.device).tril()
    mask = causal & key_valid[:, None, None, :]
    empty = ~mask.any(dim=-1, keepdim=True)
    eye = torch.eye(s, dtype=torch.bool, device=key_valid.device)
    return mask | (empty & eye)


def attend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, causal: bool
) -> torch.Tensor:
    """SDPA with GQA: q (B, H, Sq, hd), k/v (B, Hkv, Sk, hd) → (B, Sq, H·hd).

    `mask` is a boolean mask broadcastable to (B, H, Sq, Sk) (True = attend); with `mask=None` and
    `causal=True` the is_causal fast path runs.
    """
    if mask is not None and mask.dtype != torch.bool:
        raise ValueError("attention masks must be boolean (True = attend)")
    gqa = k.shape[1] != q.shape[1]
    out = F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, is_causal=causal and mask is None, enable_gqa=gqa
    )
    b, h, s, d = out.shape
    return out.transpose(1, 2).reshape(b, s, h * d)


@dataclass
class AttentionProbe:
    """A request for one query's attention row in the next attention call that receives it.

    `query` (B,) is the probing query's position in that call's query sequence, `key_valid` (B, S)
    the keys it may see (a causal probe also skips keys after its own position, as the causal mask
    does). The call fills `row` (B, S) float32: softmax(q·kᵀ/√d_h) of that query, averaged over
    heads, 0 on excluded keys (and everywhere for a clip with no allowed key).
    """

    query: torch.Tensor
    key_valid: torch.Tensor
    causal: bool = True
    row: torch.Tensor | None = None

    def record(self, q: torch.Tensor, k: torch.Tensor) -> None:
        self.row = attention_row(q, k, self.query, self.key_valid, self.causal)

    @staticmethod
    def flops(n_heads: int, head_dim: int, keys: int) -> int:
        """One query row over `keys` keys: 2·S·H·d_h (softmax and the head mean not counted)."""
        return 2 * keys * n_heads * head_dim


def attention_row(
    q: torch.Tensor, k: torch.Tensor, query: torch.Tensor, key_valid: torch.Tensor, causal: bool
) -> torch.Tensor:
    """q (B, H, Sq, d), k (B, H_kv, S, d) → (B, S): the head-averaged attention of q[b, :, query[b]]
    (no gradient: it only ranks tokens). GQA groups share their key head, as SDPA does."""
    b, h, _, d = q.shape
    h_kv, s = k.shape[1], k.shape[2]
    with torch.no_grad():
        pick = query.to(q.device).view(b, 1, 1, 1).expand(b, h, 1, d)
        row_q = q.gather(2, pick).view(b, h_kv, h // h_kv, d).float()
        logits = torch.einsum("bkgd,bksd->bkgs", row_q, k.float()) / math.sqrt(d)
        allowed = key_valid.to(q.device)
        if causal:
            allowed = allowed & (torch.arange(s, device=q.device)[None] <= query[:, None])
        logits = logits.masked_fill(~allowed[:, None, None, :], float("-inf"))
        probs = torch.softmax(logits, dim=-1).nan_to_num(0.0)
        return probs.mean(dim=(1, 2))


class Attention(nn.Module):
    """Grouped-query attention projections (+ optional per-head qk RMSNorm as in Qwen3)."""

    def __init__(
        self,
        dim: int,
        n_heads: int,
        n_kv_heads: int,
        head_dim: int,
        qk_norm: bool,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        if n_heads % n_kv_heads:
            raise ValueError(f"n_kv_heads={n_kv_heads} must divide n_heads={n_heads}")
        self.n_heads, self.n_kv_heads, self.head_dim = n_heads, n_kv_heads, head_dim
        self.q_proj = nn.Linear(dim, n_heads * head_dim, bias=False)
        self.k_proj = nn.Linear(dim, n_kv_heads * head_dim, bias=False)
        self.v_proj = nn.Linear(dim, n_kv_heads * head_dim, bias=False)
        self.o_proj = nn.Linear(n_heads * head_dim, dim, bias=False)
        self.q_norm = RMSNorm(head_dim, eps) if qk_norm else None
        self.k_norm = RMSNorm(head_dim, eps) if qk_norm else None

    @staticmethod
    def flops(
        dim: int, n_heads: int, n_kv_heads: int, head_dim: int, queries: int, keys: int
    ) -> int:
        """Sq queries over Sk keys, widths as the projections run them (H·d_h may differ from d):
        q and o 2·Sq·d·H·d_h each, k and v 2·Sk·d·H_kv·d_h each, QKᵀ and AV 2·Sq·Sk·H·d_h each
        (every query-key pair: no halving for causal masks; GQA shares K/V, not the products)."""
        width, kv = n_heads * head_dim, n_kv_heads * head_dim
        return 4 * queries * dim * width + 4 * keys * dim * kv + 4 * queries * keys * width

    def _heads(self, x: torch.Tensor, n: int) -> torch.Tensor:
        b, s, _ = x.shape
        return x.view(b, s, n, self.head_dim).transpose(1, 2)

    def project_q(self, x: torch.Tensor, rope: Rope | None) -> torch.Tensor:
        q = self._heads(self.q_proj(x), self.n_heads)
        if self.q_norm is not None:
            q = self.q_norm(q)
        return apply_rope(q, rope) if rope is not None else q

    def project_kv(self, x: torch.Tensor, rope: Rope | None) -> tuple[torch.Tensor, torch.Tensor]:
        k = self._heads(self.k_proj(x), self.n_kv_heads)
        v = self._heads(self.v_proj(x), self.n_kv_heads)
        if self.k_norm is not None:
            k = self.k_norm(k)
        return (apply_rope(k, rope) if rope is not None else k), v

    def forward(
        self,
        x: torch.Tensor,
        rope: Rope,
        mask: torch.Tensor | None = None,
        probe: AttentionProbe | None = None,
    ) -> torch.Tensor:
        """Causal self-attention; `mask=None` → is_causal fast path, else a boolean mask. A
        `probe` gets its query's attention row from the same q and k."""
        q = self.project_q(x, rope)
        k, v = self.project_kv(x, rope)
        if probe is not None:
            probe.record(q, k)
        return self.o_proj(attend(q, k, v, mask, causal=True))


class SwiGLU(nn.Module):
    """down(silu(gate(x)) · up(x))."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(dim, hidden, bias=False)
        self.up_proj = nn.Linear(dim, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, dim, bias=False)

    @staticmethod
    def flops(dim: int, hidden: int, tokens: int) -> int:
        """gate, up and down: 6·tokens·d·m."""
        return 6 * tokens * dim * hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))
