"""Shared fixtures: a zoo of awkward video clips and small on-disk dataset trees."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.video_fixtures import coded_frames, write_clip_zoo, write_mp4


@pytest.fixture(scope="session")
def clip_zoo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One clip of each awkward kind (see `write_clip_zoo`), written once per session."""
    return write_clip_zoo(tmp_path_factory.mktemp("zoo"))


@pytest.fixture
def qa_tree(tmp_path: Path) -> Callable[..., Path]:
    """Build `<root>/raw/<name>/qa/<split>.jsonl` over given video files; returns the data root.

    `make(videos={"clip": path_or_None}, split=..., name=...)`; None writes a coded 20-frame clip.
    Every row gets a question, an answer, options, a caption and a ground-truth file path.
    """

    def make(
        videos: dict[str, Path | None], split: str = "validation", name: str = "fixture"
    ) -> Path:
        root = tmp_path / "data"
        rows: list[dict[str, Any]] = []
        for i, (clip_id, src) in enumerate(videos.items()):
            video = src if src is not None else root / "raw" / "videos" / split / f"{clip_id}.mp4"
            if src is None:
                write_mp4(video, coded_frames(20), fps=5)
            answer = ("red", "blue")[i % 2]
            rows.append(
                {
                    "clip_id": clip_id,
                    "video": str(video),
                    "question": f"What colour is object {i}?",
                    "answer": answer,
                    "options": ["red", "blue"],
                    "question_type": "colour",
                    "caption": f"a {answer} square moves left.",
                    "ground_truth": f"raw/{name}/ground_truth/{split}/{clip_id}.json",
                }
            )
        manifest = root / "raw" / name / "qa" / f"{split}.jsonl"
        manifest.parent.mkdir(parents=True, exist_ok=True)
        manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return root

    return make
