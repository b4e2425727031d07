"""Small configs and batches shared by the model tests."""

from __future__ import annotations

import torch

from core.config import ExperimentConfig
from core.config.language_model import LanguageModelConfig


def fusion_lm(n_layers: int) -> LanguageModelConfig:
    """A 32-wide, 4-head (2 KV) decoder of `n_layers` layers for the fusion arch tests."""
    return LanguageModelConfig(
        dim=32, n_layers=n_layers, n_heads=4, n_kv_heads=2, max_seq_len=64, qk_norm=True
    )


def tiny_config(**sections) -> ExperimentConfig:
    """A very small experiment: 32×32 frames, patch 8 (4×4 grid), window 2 → 4 tokens per frame."""
    base = {
        "data": {"frame_size": 32, "max_frames": 4, "min_frames": 1, "max_text_len": 8},
        "vision": {"patch_size": 8, "dim": 32, "depth": 4, "heads": 2},
        "connector": {"window": 2},
        "lm": {"dim": 32, "n_layers": 2, "n_heads": 2, "n_kv_heads": 1, "max_seq_len": 64},
        "pruning": {"prune_at": 1},
    }
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    return ExperimentConfig.from_dict(base)


def video_batch(cfg: ExperimentConfig, batch: int = 2, seed: int = 0, vocab: int = 20) -> dict:
    gen = torch.Generator().manual_seed(seed)
    f, s, t = cfg.data.max_frames, cfg.data.frame_size, cfg.data.max_text_len
    input_ids = torch.randint(4, vocab, (batch, t), generator=gen)
    labels = torch.full((batch, t), -100)
    labels[:, 2:-1] = input_ids[:, 3:]
    return {
        "pixel_values": torch.randn(batch, f, 3, s, s, generator=gen),
        "frame_mask": torch.ones(batch, f, dtype=torch.bool),
        "input_ids": input_ids,
        "labels": labels,
        "text_mask": torch.ones(batch, t, dtype=torch.bool),
        "sample_key": torch.arange(batch),
    }
