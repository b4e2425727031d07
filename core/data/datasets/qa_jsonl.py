"""Video QA (or captions) from a JSON-lines manifest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from core.data.datasets.base import ClipRecord, VideoTextDataset, resolve
from core.registry import DATASETS

REQUIRED = ("video", "question", "answer")


def manifest_path(cfg: Any, split: str) -> Path:
    """data.manifest (with `{split}` substituted) or `<root>/raw/<name>/qa/<split>.jsonl`."""
    if cfg.manifest:
        return Path(cfg.manifest.replace("{split}", split))
    return Path(cfg.data_root) / "raw" / cfg.dataset_name / "qa" / f"{split}.jsonl"


def qa_prompt(question: str, options: list[Any] | None) -> str:
    """The question, plus " options: a b c" when the row lists options."""
    if options:
        return f"{question} options: {' '.join(str(o) for o in options)}"
    return question


@DATASETS.register("qa_jsonl")
class QAJsonlDataset(VideoTextDataset):
    """task=qa: prompt = question (+ options), target = answer; task=caption: target = caption."""

    @classmethod
    def load_records(cls, cfg: Any, split: str) -> list[ClipRecord]:
        path = manifest_path(cfg, split)
        if not path.is_file():
            raise FileNotFoundError(
                f"qa_jsonl manifest {path} does not exist. Fix: set data.manifest or put "
                f"{split}.jsonl under <data_root>/raw/<dataset_name>/qa/."
            )
        root = Path(cfg.data_root)
        records = []
        with open(path, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                where = f"{path}:{lineno}"
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(
                        f"{where}: invalid JSON ({exc}). Fix: one object per line."
                    ) from exc
                if not isinstance(row, dict):
                    raise ValueError(f"{where}: expected a JSON object. Fix: one object per line.")
                records.append(_record(cfg, root, row, where))
        return records


def _record(cfg: Any, root: Path, row: dict[str, Any], where: str) -> ClipRecord:
    missing = [k for k in REQUIRED if k not in row]
    if missing:
        raise ValueError(
            f"{where}: missing key(s) {missing}. Fix: every row needs {list(REQUIRED)}."
        )
    video = resolve(root, str(row["video"]))
    options = row.get("options") or None
    if options is not None and not isinstance(options, list):
        raise ValueError(f"{where}: 'options' must be a list, got {type(options).__name__}.")
    caption = row.get("caption")
    gt = row.get("ground_truth")
    extra = [str(o) for o in options or []] + ([str(caption)] if caption else [])
    common = {
        "clip_id": str(row.get("clip_id") or video.stem),
        "video": video,
        "ground_truth": resolve(root, str(gt)) if gt else None,
        "extra_texts": extra,
    }
    if cfg.task == "caption":
        if not caption:
            raise ValueError(
                f"{where}: data.task=caption but the row has no 'caption'. Fix: add captions or "
                "use data.task=qa."
            )
        return ClipRecord(prompt=cfg.prompt, target=str(caption), answer=str(caption), **common)
    answer = str(row["answer"])
    return ClipRecord(
        prompt=qa_prompt(str(row["question"]), options),
        target=answer,
        answer=answer,
        question_type=str(row.get("question_type") or "qa"),
        options=[str(o) for o in options] if options else None,
        **common,
    )
