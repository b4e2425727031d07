"""WebVid-style captions: CSV partitions (videoid, name) and nested video folders."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from core.data.datasets.base import ClipRecord, VideoTextDataset
from core.registry import DATASETS

CSV_SPLIT = {"train": "train", "validation": "val"}


def video_path(root: Path, split: str, videoid: str) -> Path:
    """train: videos/train/<id[:2]>/<id[:4]>/<id[:6]>/<id>.mp4; validation: videos/validation/<id>.mp4."""
    if split == "train":
        return (
            root
            / "raw"
            / "videos"
            / "train"
            / videoid[:2]
            / videoid[:4]
            / videoid[:6]
            / f"{videoid}.mp4"
        )
    return root / "raw" / "videos" / "validation" / f"{videoid}.mp4"


def partition_files(cfg: Any, split: str) -> list[Path]:
    """The CSV files of `split`: cfg.manifest (a CSV or a folder of them) or the default folder."""
    if cfg.manifest:
        where = Path(cfg.manifest.replace("{split}", split))
    else:
        where = (
            Path(cfg.data_root)
            / "raw"
            / cfg.dataset_name
            / "data"
            / CSV_SPLIT[split]
            / "partitions"
        )
    if where.is_file():
        return [where]
    if not where.is_dir():
        raise FileNotFoundError(
            f"webvid manifest {where} does not exist. Fix: set data.data_root/data.dataset_name to "
            "where raw/<name>/data/<train|val>/partitions/*.csv live, or data.manifest to a CSV."
        )
    files = sorted(where.glob("*.csv"))
    if not files:
        raise FileNotFoundError(
            f"webvid manifest directory {where} holds no *.csv partitions. Fix: put the "
            "(videoid,name) CSV files there or point data.manifest at them."
        )
    return files


@DATASETS.register("webvid")
class WebVidDataset(VideoTextDataset):
    """Caption task: prompt = data.prompt, target = the CSV caption (`name`)."""

    @classmethod
    def load_records(cls, cfg: Any, split: str) -> list[ClipRecord]:
        root = Path(cfg.data_root)
        gt_dir = root / "raw" / cfg.dataset_name / "ground_truth" / split
        records = []
        for path in partition_files(cfg, split):
            with open(path, newline="", encoding="utf-8") as fh:
                reader = csv.DictReader(fh)
                missing = {"videoid", "name"} - set(reader.fieldnames or [])
                if missing:
                    raise ValueError(
                        f"{path}: missing CSV column(s) {sorted(missing)}. Fix: the header must "
                        "include videoid and name."
                    )
                for row in reader:
                    vid = str(row["videoid"]).strip()
                    caption = row["name"] or ""
                    records.append(
                        ClipRecord(
                            clip_id=vid,
                            video=video_path(root, split, vid),
                            prompt=cfg.prompt,
                            target=caption,
                            answer=caption,
                            ground_truth=gt_dir / f"{vid}.json",
                        )
                    )
        return records
