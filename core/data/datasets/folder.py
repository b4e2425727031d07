"""A plain folder of videos with a captions sidecar (captions.json or captions.csv)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from core.data.datasets.base import ClipRecord, VideoTextDataset
from core.registry import DATASETS


def folder_dir(cfg: Any, split: str) -> Path:
    """data.manifest (a directory, `{split}` substituted) if set, else data.data_root."""
    return Path(cfg.manifest.replace("{split}", split)) if cfg.manifest else Path(cfg.data_root)


def read_captions(folder: Path) -> dict[str, str]:
    """{filename: caption} from captions.json, else captions.csv (filename,caption)."""
    js, cs = folder / "captions.json", folder / "captions.csv"
    if js.is_file():
        try:
            data = json.loads(js.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"{js}: invalid JSON ({exc}). Fix: write {{filename: caption}}."
            ) from exc
        if not isinstance(data, dict):
            raise ValueError(f"{js}: expected an object {{filename: caption}}.")
        return {str(k): str(v) for k, v in data.items()}
    if cs.is_file():
        with open(cs, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if not {"filename", "caption"} <= set(reader.fieldnames or []):
                raise ValueError(f"{cs}: the header must be 'filename,caption'.")
            return {row["filename"]: row["caption"] for row in reader}
    raise FileNotFoundError(
        f"folder dataset {folder}: no captions.json or captions.csv. Fix: add a sidecar mapping "
        "each video filename to its caption."
    )


@DATASETS.register("folder")
class FolderDataset(VideoTextDataset):
    """Caption task over the clips listed in the sidecar (sorted by filename)."""

    supports_ground_truth = False

    @classmethod
    def data_location(cls, cfg: Any) -> Path:
        return folder_dir(cfg, cfg.split)

    @classmethod
    def load_records(cls, cfg: Any, split: str) -> list[ClipRecord]:
        folder = folder_dir(cfg, split)
        if not folder.is_dir():
            raise FileNotFoundError(
                f"folder dataset directory {folder} does not exist. Fix: set data.data_root or "
                "data.manifest to a directory of videos."
            )
        captions = read_captions(folder)
        return [
            ClipRecord(
                clip_id=name,
                video=folder / name,
                prompt=cfg.prompt,
                target=caption,
                answer=caption,
            )
            for name, caption in sorted(captions.items())
        ]
