"""Batch dataset samples into fixed-shape tensors (strings become lists)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def collate(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack each tensor field to (B, ...) and gather other fields into lists.

    Every sample must have the same keys and, per tensor field, the same shape (the dataset pads
    to data.max_frames / data.max_text_len); a mismatch raises naming the field and sample.
    """
    if not samples:
        raise ValueError("collate: empty batch")
    keys = list(samples[0])
    for i, s in enumerate(samples):
        if set(s) != set(keys):
            raise ValueError(
                f"collate: sample {i} has keys {sorted(s)}, sample 0 has {sorted(keys)}. Fix: build "
                "every sample with the same dataset config."
            )
    batch: dict[str, Any] = {}
    for key in keys:
        first = samples[0][key]
        if isinstance(first, torch.Tensor):
            for i, s in enumerate(samples):
                if not isinstance(s[key], torch.Tensor) or s[key].shape != first.shape:
                    got = getattr(s[key], "shape", type(s[key]).__name__)
                    raise ValueError(
                        f"collate: field {key!r} of sample {i} has shape {tuple(got)}, sample 0 has "
                        f"{tuple(first.shape)} (frames F / text length T must match within a "
                        "batch). Fix: pad to data.max_frames and data.max_text_len."
                    )
            batch[key] = torch.stack([s[key] for s in samples])
        else:
            batch[key] = [s[key] for s in samples]
    return batch
