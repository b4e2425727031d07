"""Pixels for a scene: numpy-only shape masks, textured background, frames and ground-truth boxes."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from core.data.synthetic.scene import Background, Scene
from core.data.synthetic.vocab import COLOURS, REFERENCE_SIZE


@lru_cache(maxsize=64)
def shape_mask(shape: str, s: int) -> np.ndarray:
    """Boolean (s, s) mask of a shape filling its s x s box (read-only, cached)."""
    c = (s - 1) / 2.0
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float64)
    if shape == "square":
        mask = np.ones((s, s), dtype=bool)
    elif shape == "circle":
        mask = (yy - c) ** 2 + (xx - c) ** 2 <= (s / 2.0) ** 2 - 0.5
    elif shape == "triangle":
        mask = np.abs(xx - c) <= (yy + 1.0) / 2.0
    elif shape == "cross":
        arm = max(1.0, s / 6.0)
        mask = (np.abs(xx - c) <= arm) | (np.abs(yy - c) <= arm)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    mask.setflags(write=False)
    return mask


@lru_cache(maxsize=64)
def mask_extent(shape: str, s: int) -> tuple[int, int, int, int]:
    """Tight (x0, y0, x1, y1) of the mask inside its box, x1/y1 exclusive."""
    mask = shape_mask(shape, s)
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def _smooth_noise(rng: np.random.Generator, size: int) -> np.ndarray:
    cells = int(rng.integers(3, 7))
    grid = rng.uniform(-1.0, 1.0, (cells + 1, cells + 1))
    pos = np.linspace(0.0, cells, size)
    i0 = np.minimum(pos.astype(int), cells - 1)
    w = pos - i0
    rows = grid[i0] * (1 - w)[:, None] + grid[i0 + 1] * w[:, None]
    return rows[:, i0] * (1 - w)[None, :] + rows[:, i0 + 1] * w[None, :]


def _stripes(rng: np.random.Generator, size: int) -> np.ndarray:
    theta = rng.uniform(0.0, np.pi)
    period = rng.uniform(8.0, 24.0) * size / REFERENCE_SIZE
    phase = rng.uniform(0.0, 2 * np.pi)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    return np.sin(2 * np.pi * (xx * np.cos(theta) + yy * np.sin(theta)) / period + phase)


def render_background(background: Background, size: int) -> np.ndarray:
    """uint8 (size, size, 3): a dark, low-contrast texture (every object colour is brighter)."""
    rng = np.random.default_rng(background.seed)
    base = rng.uniform(28.0, 52.0) + rng.uniform(-6.0, 6.0, 3)
    amplitude = rng.uniform(5.0, 9.0)
    field = _smooth_noise(rng, size) if background.kind == "noise" else _stripes(rng, size)
    img = base[None, None, :] + amplitude * field[:, :, None]
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def render_clip(scene: Scene) -> tuple[np.ndarray, list[list[list[int]]], list[list[int]]]:
    """Frames uint8 (F, S, S, 3), per-frame boxes [x0, y0, x1, y1] of visible objects and the
    matching object ids."""
    bg = render_background(scene.background, scene.size)
    frames = np.repeat(bg[None], scene.num_frames, axis=0)
    boxes: list[list[list[int]]] = []
    ids: list[list[int]] = []
    for f in range(scene.num_frames):
        frame_boxes, frame_ids = [], []
        for obj in scene.objects:
            if not obj.visible(f):
                continue
            x, y = obj.position(f)
            s = obj.size
            region = frames[f, y : y + s, x : x + s]
            region[shape_mask(obj.shape, s)] = COLOURS[obj.colour_at(f)]
            ex0, ey0, ex1, ey1 = mask_extent(obj.shape, s)
            frame_boxes.append([x + ex0, y + ey0, x + ex1, y + ey1])
            frame_ids.append(obj.oid)
        boxes.append(frame_boxes)
        ids.append(frame_ids)
    return frames, boxes, ids
