"""Dataset types (registered in DATASETS) and the builders used by training and evaluation."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from core.config.data import DataConfig
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
    "load_records",
    "prepare_data",
    "sample_key",
]


SYNTHETIC = "synthetic"


def prepare_data(cfg: DataConfig) -> None:
    """Make the configured data usable, once per cell, before anything is built.

    Only the project's synthetic benchmark (`data.dataset_name=synthetic` with
    `data.generate_synthetic=true`) is generated, on first use (cached; a marker makes later calls
    cheap). Any other dataset must already exist: a missing one is an error naming the path, never a
    freshly generated stand-in under the user's dataset name.
    """
    if cfg.dataset_name == SYNTHETIC:
        if cfg.generate_synthetic:
            from core.data.synthetic import ensure_synthetic

            ensure_synthetic(
                cfg.data_root,
                cfg.synthetic_train,
                cfg.synthetic_val,
                cfg.synthetic_seed,
                name=cfg.dataset_name,
                question_types=cfg.synthetic_question_types or None,
            )
        return
    folder = dataset_class(cfg).data_location(cfg)
    if folder.exists():
        return
    raw = Path(cfg.data_root) / "raw"
    known = sorted(p.name for p in raw.iterdir() if p.is_dir()) if raw.is_dir() else []
    close = difflib.get_close_matches(cfg.dataset_name, [*known, SYNTHETIC], n=1)
    hint = f"did you mean data.dataset_name={close[0]}? " if close else ""
    raise FileNotFoundError(
        f"data.dataset_name={cfg.dataset_name!r}: no {cfg.dataset_type} dataset at {folder} "
        f"(datasets under {raw}: "
        f"{', '.join(known) or 'none'}). Only the synthetic benchmark "
        f"(data.dataset_name={SYNTHETIC}) is generated on first use. Fix: {hint}put the dataset "
        "there, or point data.data_root / data.manifest at it."
    )


def dataset_class(cfg: Any) -> type[VideoTextDataset]:
    if cfg.dataset_type not in DATASETS:
        raise ValueError(DATASETS.unknown_message(cfg.dataset_type, "data.dataset_type"))
    return DATASETS.get(cfg.dataset_type)


def load_records(cfg: Any, split: str) -> list[ClipRecord]:
    """Manifest rows of `split`, truncated to max_samples (train split) / max_eval_samples."""
    if split not in ("train", "validation"):
        raise ValueError(f"split={split!r}: unknown split. Fix: use 'train' or 'validation'.")
    records = dataset_class(cfg).load_records(cfg, split)
    limit = cfg.max_samples if split == cfg.split else cfg.max_eval_samples
    return records[:limit] if limit > 0 else records


def dataset_texts(cfg: Any, split: str) -> list[str]:
    """Every text of a split (all rows, ignoring max_samples) for building a vocabulary."""
    return [t for r in dataset_class(cfg).load_records(cfg, split) for t in r.texts() if t]


def build_dataset(cfg: Any, split: str, tokenizer: Any) -> VideoTextDataset:
    """The dataset of `cfg.dataset_type` for `split`; manifest problems raise here, clips never do."""
    records = load_records(cfg, split)
    return dataset_class(cfg)(cfg, split, tokenizer, records)
