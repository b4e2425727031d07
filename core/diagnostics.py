"""Which windows of a clip reached the LLM: the keep map the figures draw (`keep_example.npz`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from core.data.decode import denormalize_frames

KEEP_EXAMPLE = "keep_example.npz"


@torch.no_grad()
def save_keep_example(
    vlm: nn.Module,
    sample: dict[str, Any],
    batch: dict[str, Any],
    out_dir: Path,
    pixel_mean: list[float],
    pixel_std: list[float],
    method: str,
    ratio: float,
) -> Path:
    """Encode one collated clip and store its frames (as the model saw them, de-normalised with
    the configured statistics) beside the per-frame window keep mask."""
    vlm.eval()
    visual = vlm.encode(batch)
    windows = vlm.vision.windows
    f = batch["pixel_values"].shape[1]
    keep = visual.diagnostics.get("keep")
    if keep is None:
        keep = torch.ones(1, f, windows.num_windows, dtype=torch.bool)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / KEEP_EXAMPLE
    np.savez_compressed(
        path,
        frames=denormalize_frames(sample["pixel_values"], pixel_mean, pixel_std),
        keep=keep[0].view(f, windows.per_side, windows.per_side).cpu().numpy(),
        frame_mask=sample["frame_mask"].numpy(),
        window=np.array(windows.window),
        clip_id=np.array(str(sample.get("clip_id", ""))),
        question=np.array(str(sample.get("question", ""))),
        answer=np.array(str(sample.get("answer", ""))),
        method=np.array(method),
        ratio=np.array(ratio),
    )
    return path


def keep_map_image(path: Path, dim: float = 0.25) -> np.ndarray:
    """The keep map of `save_keep_example` as one uint8 RGB strip (frames side by side, padding
    frames left out unless every frame is padding): kept windows as the model saw them, dropped windows dimmed to `dim`."""
    with np.load(path) as z:
        frames, keep = z["frames"], z["keep"].astype(bool)
        real = z["frame_mask"].astype(bool) if "frame_mask" in z else np.ones(len(frames), bool)
    if real.any():  # a clip with no real frame (undecodable, all padding) is shown whole
        frames, keep = frames[real], keep[real]
    size = frames.shape[1]
    scale = -(-size // keep.shape[1])  # pixels per window, rounded up
    shown = np.repeat(np.repeat(keep, scale, axis=1), scale, axis=2)[:, :size, :size]
    out = frames.astype(np.float32) * np.where(shown, 1.0, dim)[..., None]
    return np.concatenate(list(out.round().astype(np.uint8)), axis=1)
