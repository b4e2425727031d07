"""Dataset doctor: counts per category on a manifest holding one clip of each kind."""

from __future__ import annotations

import json

from core.data.doctor import main
from tests.video_fixtures import coded_frames, write_mp4


def test_doctor_counts_each_kind(qa_tree, clip_zoo, tmp_path, capsys):
    short = write_mp4(tmp_path / "short.mp4", coded_frames(2), fps=5)
    videos = dict(clip_zoo) | {"short": short, "ok_again": clip_zoo["ok"]}
    root = qa_tree(videos, split="train")
    out = tmp_path / "report.json"
    code = main(
        [
            "--data-root", str(root), "--dataset-type", "qa_jsonl", "--dataset-name", "fixture",
            "--min-frames", "4", "--json", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    report = json.loads(out.read_text())
    assert report["rows"] == len(videos) and report["clips"] == len(videos) - 1
    assert report["counts"] == {
        "ok": 5,  # ok, odd_resolution, vfr, rotated, partial (its leading frames decode)
        "missing": 1,
        "empty": 1,
        "undecodable": 2,  # truncated index, random bytes
        "no_video_stream": 1,
        "too_short": 1,
    }
    assert any("random_bytes.mp4" in e for e in report["examples"]["undecodable"])
    assert "short.mp4" in report["examples"]["too_short"][0]
    printed = capsys.readouterr().out
    assert "no_video_stream  1" in printed and "e.g. missing:" in printed


def test_doctor_exits_2_on_unreadable_manifest(tmp_path, capsys):
    assert main(["--data-root", str(tmp_path), "--dataset-type", "webvid"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["--data-root", str(tmp_path), "--dataset-type", "webvdi"]) == 2
    assert "Did you mean 'webvid'" in capsys.readouterr().err
