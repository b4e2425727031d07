"""Dataset types (registered in DATASETS) and the builders used by training and evaluation."""

from __future__ import annotations

from typing import Any

from core.data.datasets.base import ClipRecord, VideoTextDataset, sample_key
from core.data.datasets.folder import FolderDataset
from core.data.datasets.qa_jsonl import QAJsonlDataset
from core.data.datasets.webvid import WebVidDataset
from core.registry import DATASETS

__all__ = [
    "ClipRecord",
    "FolderDataset",
    "QAJsonlDataset",
    "VideoTextDataset",
    "WebVidDataset",
    "build_dataset",
    "dataset_class",
    "dataset_texts",
    "ensure_data",
    "load_records",
    "sample_key",
]


def ensure_data(cfg: Any) -> None:
    """Generate the synthetic benchmark on first use (only for dataset_name 'synthetic')."""
    if cfg.generate_synthetic and cfg.dataset_name == "synthetic":
        from core.data.synthetic import ensure_synthetic

        ensure_synthetic(
            cfg.data_root,
            cfg.synthetic_train,
            cfg.synthetic_val,
            cfg.synthetic_seed,
            name=cfg.dataset_name,
            question_types=getattr(cfg, "synthetic_question_types", None) or None,
        )


def dataset_class(cfg: Any) -> type[VideoTextDataset]:
    if cfg.dataset_type not in DATASETS:
        raise ValueError(DATASETS.unknown_message(cfg.dataset_type, "data.dataset_type"))
    return DATASETS.get(cfg.dataset_type)


def load_records(cfg: Any, split: str) -> list[ClipRecord]:
    """Manifest rows of `split`, truncated to max_samples (train split) / max_eval_samples."""
    if split not in ("train", "validation"):
        raise ValueError(f"split={split!r}: unknown split. Fix: use 'train' or 'validation'.")
    ensure_data(cfg)
    records = dataset_class(cfg).load_records(cfg, split)
    limit = cfg.max_samples if split == cfg.split else cfg.max_eval_samples
    return records[:limit] if limit > 0 else records


def dataset_texts(cfg: Any, split: str) -> list[str]:
    """Every text of a split (all rows, ignoring max_samples) for building a vocabulary."""
    ensure_data(cfg)
    return [t for r in dataset_class(cfg).load_records(cfg, split) for t in r.texts() if t]


def build_dataset(cfg: Any, split: str, tokenizer: Any) -> VideoTextDataset:
    """The dataset of `cfg.dataset_type` for `split`; manifest problems raise here, clips never do."""
    records = load_records(cfg, split)
    return dataset_class(cfg)(cfg, split, tokenizer, records)
