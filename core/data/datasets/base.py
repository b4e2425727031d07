"""Shared video+text dataset: manifest records → decoded, masked, tokenised tensors.

Subclasses only turn a manifest into `ClipRecord`s (`load_records`). Bad clips never raise here:
whatever decodes is used, a clip with no decodable frame becomes a fully masked sample
(frame_mask and sample_valid False, labels -100), and each failure is counted in `bad_samples`
and logged once per clip.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from core.data.decode import ClipError, load_clip, normalize_frames
from core.data.frame_cache import DecodedClip, FrameCache, cache_key
from core.data.sampling import ClipTiming, sample_timestamps
from core.data.text import IGNORE_INDEX, build_text_example

log = logging.getLogger(__name__)


@dataclass
class ClipRecord:
    """One training/eval example as read from a manifest (no decoding yet)."""

    clip_id: str
    video: Path
    prompt: str
    target: str
    answer: str
    question_type: str = "caption"
    ground_truth: Path | None = None
    extra_texts: list[str] = field(default_factory=list)
    options: list[str] | None = None

    def texts(self) -> list[str]:
        """Every text a tokenizer vocabulary should cover."""
        return [self.prompt, self.target, self.answer, *self.extra_texts]


def sample_key(clip_id: str) -> int:
    """Stable non-negative int64 hash of a clip id (same across processes and runs)."""
    digest = hashlib.sha1(clip_id.encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def resolve(root: Path, path: str) -> Path:
    """`path` if absolute, else relative to the data root."""
    p = Path(path)
    return p if p.is_absolute() else root / p


class VideoTextDataset(Dataset):
    """Base class; subclasses implement `load_records(cfg, split)`."""

    supports_ground_truth = True

    def __init__(self, cfg: Any, split: str, tokenizer: Any, records: list[ClipRecord]) -> None:
        self.cfg = cfg
        self.split = split
        self.tokenizer = tokenizer
        self.records = records
        self.cache = FrameCache(cfg.data_root) if cfg.cache_frames else None
        self.bad_samples: dict[str, int] = {}
        self._warned: set[str] = set()
        if cfg.ground_truth:
            self._check_ground_truth()

    @classmethod
    def load_records(cls, cfg: Any, split: str) -> list[ClipRecord]:
        """Read the manifest of `split`; raise a clear error if it is missing or malformed."""
        raise TypeError(f"{cls.__name__} must define load_records")

    @classmethod
    def data_location(cls, cfg: Any) -> Path:
        """Where this dataset type keeps `cfg`'s data: an explicit data.manifest, else
        `<data_root>/raw/<dataset_name>` (what `prepare_data` checks before anything is built)."""
        if cfg.manifest:
            return Path(cfg.manifest.replace("{split}", cfg.split))
        return Path(cfg.data_root) / "raw" / cfg.dataset_name

    def _check_ground_truth(self) -> None:
        if not self.supports_ground_truth:
            raise ValueError(
                f"data.ground_truth=True: dataset type {self.cfg.dataset_type!r} has no ground "
                "truth. Fix: set data.ground_truth=false."
            )
        missing = [
            r for r in self.records if r.ground_truth is None or not r.ground_truth.is_file()
        ]
        if missing:
            examples = ", ".join(f"{r.clip_id}: {r.ground_truth}" for r in missing[:3])
            raise FileNotFoundError(
                f"data.ground_truth=True but {len(missing)} of {len(self.records)} clips have no "
                f"ground-truth file (e.g. {examples}). Fix: regenerate the data with ground truth "
                "or set data.ground_truth=false."
            )

    def qa_rows(self) -> list[tuple[str, str, list[str] | None]]:
        """(question_type, answer, options) per record: what chance level is computed from."""
        return [(r.question_type, r.answer, r.options) for r in self.records]

    def __len__(self) -> int:
        return len(self.records)

    def _timestamps(self, clip: ClipTiming) -> list[float]:
        c = self.cfg
        return sample_timestamps(c.sampling_policy, clip, c.fps, c.min_frames, c.max_frames)

    def _decode(self, path: Path) -> DecodedClip:
        try:
            frames, info, _ = load_clip(path, self._timestamps, self.cfg.frame_size)
        except ClipError as exc:
            return _empty_clip(self.cfg.frame_size, exc.reason, str(exc))
        except Exception as exc:  # a broken clip must never stop training
            return _empty_clip(self.cfg.frame_size, "undecodable", f"{path}: {exc}")
        reason = ""
        if not info.valid.any():
            reason = "undecodable"
        elif not info.valid.all():
            reason = "partial"
        error = f"{path}: {info.error}" if info.error else ""
        return DecodedClip(frames, info.times, info.valid, reason, error)

    def load_frames(self, record: ClipRecord) -> DecodedClip:
        """Decoded frames of a clip, through the frame cache when enabled."""
        key = cache_key(record.video, self.cfg) if self.cache is not None else None
        if key is not None:
            hit = self.cache.get(key)
            if hit is not None:
                return hit
        clip = self._decode(record.video)
        if key is not None and clip.reason not in ("missing", "empty"):
            self.cache.put(key, clip)
        return clip

    def _note_bad(self, record: ClipRecord, clip: DecodedClip) -> None:
        self.bad_samples[clip.reason] = self.bad_samples.get(clip.reason, 0) + 1
        if record.clip_id not in self._warned:
            self._warned.add(record.clip_id)
            detail = clip.error or f"{record.video}: {clip.reason}"
            log.warning("clip %s %s (%s)", record.clip_id, clip.reason, detail)

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self.records[index]
        cfg = self.cfg
        F, S = cfg.max_frames, cfg.frame_size
        clip = self.load_frames(record)
        if clip.reason:
            self._note_bad(record, clip)
        n = min(len(clip.valid), F)
        valid = torch.zeros(F, dtype=torch.bool)
        valid[:n] = torch.from_numpy(clip.valid[:n].copy())
        pixels = torch.zeros(F, 3, S, S)
        if n:
            pixels[:n] = normalize_frames(clip.frames[:n], self.cfg.pixel_mean, self.cfg.pixel_std)
        pixels[~valid] = 0.0
        times = torch.zeros(F, dtype=torch.float32)
        times[:n] = torch.from_numpy(clip.times[:n].astype(np.float32))
        times[~valid] = 0.0
        input_ids, labels, text_mask = build_text_example(
            self.tokenizer, record.prompt, record.target, cfg.max_text_len
        )
        sample_valid = bool(valid.any())
        if not sample_valid:
            labels.fill_(IGNORE_INDEX)
        item: dict[str, Any] = {
            "pixel_values": pixels,
            "frame_mask": valid,
            "timestamps": times,
            "input_ids": input_ids,
            "labels": labels,
            "text_mask": text_mask,
            "sample_valid": torch.tensor(sample_valid),
            "sample_key": torch.tensor(sample_key(record.clip_id), dtype=torch.int64),
            "question_type": record.question_type,
            "answer": record.answer,
            "clip_id": record.clip_id,
        }
        if cfg.ground_truth:
            item["object_mask"] = object_mask(record.ground_truth, times, valid, S)
        return item


def _empty_clip(size: int, reason: str, error: str) -> DecodedClip:
    return DecodedClip(
        np.zeros((0, size, size, 3), np.uint8),
        np.zeros(0, np.float32),
        np.zeros(0, bool),
        reason,
        error,
    )


def object_mask(
    gt_path: Path | None, times: torch.Tensor, valid: torch.Tensor, size: int
) -> torch.Tensor:
    """Rasterise ground-truth boxes at `size`² for each valid frame (bool (F, S, S)).

    A frame at time t shows source frame round(t·fps) (clamped); boxes are in source pixels with
    exclusive x1/y1 and are scaled by size/width and size/height. Padded frames stay all False.
    """
    mask = torch.zeros(len(times), size, size, dtype=torch.bool)
    if gt_path is None:
        return mask
    gt = json.loads(Path(gt_path).read_text())
    boxes = gt["boxes"]
    if not boxes:
        return mask
    sx, sy = size / float(gt["width"]), size / float(gt["height"])
    fps = float(gt["fps"])
    for f in range(len(times)):
        if not valid[f]:
            continue
        src = min(max(round(float(times[f]) * fps), 0), len(boxes) - 1)
        for x0, y0, x1, y1 in boxes[src]:
            c0, r0 = max(int(np.floor(x0 * sx)), 0), max(int(np.floor(y0 * sy)), 0)
            c1, r1 = min(int(np.ceil(x1 * sx)), size), min(int(np.ceil(y1 * sy)), size)
            if c1 > c0 and r1 > r0:
                mask[f, r0:r1, c0:c1] = True
    return mask
