"""Datasets end to end on fixture videos: tensors, masks, bad clips, GT masks, cache, batching."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from core.config import DataConfig
from core.data import build_dataset, collate
from core.data.datasets import base as base_module
from core.data.datasets.base import sample_key
from core.data.datasets.webvid import video_path
from core.data.decode import decode_frames, normalize_frames
from core.data.text import IGNORE_INDEX
from core.data.tokenizer import WordTokenizer
from core.training.batches import eval_loader
from tests.video_fixtures import coded_frames, frame_index, write_mp4

TOK = WordTokenizer.from_texts(
    ["what colour is object 0 1 2 3 ? options: red blue", "a red blue square moves left ."]
)


def _cfg(root, **kw) -> DataConfig:
    base = {
        "data_root": str(root),
        "dataset_name": "fixture",
        "generate_synthetic": False,
        "max_text_len": 24,
    }
    base.update(kw)
    return DataConfig(**base)


def test_qa_sample_tensors(qa_tree):
    root = qa_tree({"c0": None, "c1": None})
    cfg = _cfg(root, cache_frames=False, pixel_mean=[0.2, 0.4, 0.6], pixel_std=[0.1, 0.2, 0.3])
    ds = build_dataset(cfg, "validation", TOK)
    item = ds[1]
    assert (
        item["pixel_values"].shape == (8, 3, 64, 64) and item["pixel_values"].dtype == torch.float32
    )
    mean = torch.tensor(cfg.pixel_mean).view(3, 1, 1)
    std = torch.tensor(cfg.pixel_std).view(3, 1, 1)
    unit = item["pixel_values"] * std + mean  # back to [0, 1]: the configured stats were applied
    assert unit.min() >= -1e-5 and unit.max() <= 1 + 1e-5
    assert item["frame_mask"].all() and bool(item["sample_valid"])
    # 20 frames at 5 fps: the last starts at 3.8 s → 8 samples at i·3.8/7 s → nearest frames,
    # first and last included, each source frame at most once.
    want = [0, 3, 5, 8, 11, 14, 16, 19]
    frames = (unit.permute(0, 2, 3, 1) * 255).round().byte().numpy()
    assert [frame_index(f, 20) for f in frames] == want
    assert item["timestamps"].tolist() == pytest.approx([w / 5 for w in want], abs=1e-5)
    prompt = "what colour is object 1? options: red blue"
    assert TOK.decode(item["input_ids"][item["text_mask"]].tolist()) == f"{prompt} blue"
    assert TOK.decode(item["labels"][item["labels"] != IGNORE_INDEX].tolist()) == "blue"
    assert item["input_ids"].shape == item["labels"].shape == item["text_mask"].shape == (24,)
    assert (item["question_type"], item["answer"], item["clip_id"]) == ("colour", "blue", "c1")
    assert item["sample_key"].dtype == torch.int64 and int(item["sample_key"]) == sample_key("c1")
    assert sample_key("c1") != sample_key("c0")


def test_padding_frames_are_zero_and_masked(qa_tree):
    root = qa_tree({"c0": None})
    ds = build_dataset(_cfg(root, max_frames=12, fps=1.0, min_frames=2), "validation", TOK)
    item = ds[0]
    assert item["frame_mask"].tolist() == [True] * 4 + [False] * 8
    assert (item["pixel_values"][4:] == 0).all() and (item["timestamps"][4:] == 0).all()
    assert (item["pixel_values"][:4] != 0).any()


def test_caption_task_and_max_samples(qa_tree):
    root = qa_tree({"c0": None, "c1": None, "c2": None})
    cfg = _cfg(root, task="caption", prompt="describe", max_eval_samples=2, cache_frames=False)
    ds = build_dataset(cfg, "validation", TOK)
    assert len(ds) == 2
    item = ds[0]
    assert item["question_type"] == "caption" and item["answer"] == "a red square moves left."
    assert TOK.decode(item["labels"][item["labels"] != IGNORE_INDEX].tolist()) == item["answer"]
    assert len(build_dataset(_cfg(root, max_eval_samples=0), "validation", TOK)) == 3


def test_caption_task_without_caption_is_a_build_error(tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"video": "x.mp4", "question": "q", "answer": "a"}) + "\n")
    with pytest.raises(ValueError, match=r"m.jsonl:1: data.task=caption"):
        build_dataset(_cfg(tmp_path, manifest=str(manifest), task="caption"), "train", TOK)


def test_manifest_and_registry_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"qa/train.jsonl does not exist"):
        build_dataset(_cfg(tmp_path), "train", TOK)
    (tmp_path / "raw/fixture/data/train/partitions").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"partitions holds no \*.csv"):
        build_dataset(_cfg(tmp_path, dataset_type="webvid"), "train", TOK)
    with pytest.raises(ValueError, match=r"data.dataset_type='webvdi'.*Did you mean 'webvid'"):
        _cfg(tmp_path, dataset_type="webvdi")
    with pytest.raises(FileNotFoundError, match="captions.json or captions.csv"):
        build_dataset(_cfg(tmp_path, dataset_type="folder"), "train", TOK)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"video": "a.mp4", "question": "q"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:1: missing key\(s\) \['answer'\]"):
        build_dataset(_cfg(tmp_path, manifest=str(bad)), "train", TOK)


def test_webvid_path_nesting_and_end_to_end(tmp_path):
    assert video_path(tmp_path, "train", "12345678") == (
        tmp_path / "raw/videos/train/12/1234/123456/12345678.mp4"
    )
    assert video_path(tmp_path, "validation", "12345678") == (
        tmp_path / "raw/videos/validation/12345678.mp4"
    )
    for split, csv_split in (("train", "train"), ("validation", "val")):
        write_mp4(video_path(tmp_path, split, "00001234"), coded_frames(20), 5)
        part = tmp_path / f"raw/fixture/data/{csv_split}/partitions/part-0000.csv"
        part.parent.mkdir(parents=True)
        part.write_text("videoid,name,duration\n00001234,a red square moves left.,4.0\n")
        item = build_dataset(_cfg(tmp_path, dataset_type="webvid"), split, TOK)[0]
        assert bool(item["sample_valid"]) and item["clip_id"] == "00001234"
        assert item["question_type"] == "caption" and item["answer"] == "a red square moves left."


@pytest.mark.parametrize("sidecar", ["json", "csv"])
def test_folder_dataset(tmp_path, sidecar):
    write_mp4(tmp_path / "b.mp4", coded_frames(20), 5)
    write_mp4(tmp_path / "a.mp4", coded_frames(10), 5)
    captions = {"a.mp4": "a blue square.", "b.mp4": "a red square."}
    if sidecar == "json":
        (tmp_path / "captions.json").write_text(json.dumps(captions))
    else:
        lines = "".join(f"{k},{v}\n" for k, v in captions.items())
        (tmp_path / "captions.csv").write_text("filename,caption\n" + lines)
    ds = build_dataset(_cfg(tmp_path, dataset_type="folder", min_frames=1), "train", TOK)
    assert [ds[i]["clip_id"] for i in range(2)] == ["a.mp4", "b.mp4"]
    assert ds[0]["answer"] == "a blue square." and ds[0]["frame_mask"].sum() == 4
    assert ds[1]["frame_mask"].sum() == 8


GOOD = ("ok", "odd_resolution", "vfr", "rotated", "partial")
BAD = {
    "missing": "missing",
    "empty": "empty",
    "truncated": "undecodable",
    "random_bytes": "undecodable",
    "audio_only": "no_video_stream",
}


def test_bad_clips_become_masked_samples_and_are_counted(qa_tree, clip_zoo, caplog):
    root = qa_tree(dict(clip_zoo))
    ds = build_dataset(_cfg(root), "validation", TOK)
    with caplog.at_level(logging.WARNING, logger="core.data.datasets.base"):
        items = {it["clip_id"]: it for it in (ds[i] for i in range(len(ds)))}
        for i in range(len(ds)):
            ds[i]  # second epoch: counted again, not logged again
    for kind in GOOD:
        assert bool(items[kind]["sample_valid"]), kind
        assert (items[kind]["labels"] != IGNORE_INDEX).any()
    assert items["partial"]["frame_mask"].sum() < 8 and items["ok"]["frame_mask"].all()
    for kind in BAD:
        item = items[kind]
        assert not item["sample_valid"] and not item["frame_mask"].any(), kind
        assert (item["labels"] == IGNORE_INDEX).all() and (item["pixel_values"] == 0).all()
    assert ds.bad_samples == {
        "missing": 2,
        "empty": 2,
        "undecodable": 4,
        "no_video_stream": 2,
        "partial": 2,
    }
    logged = [r.getMessage() for r in caplog.records]
    assert len(logged) == len(BAD) + 1
    assert any("random_bytes" in m and "undecodable" in m for m in logged)


@pytest.mark.parametrize("workers", [0, 1])
def test_loader_over_only_bad_clips_yields_invalid_batches(qa_tree, clip_zoo, workers):
    root = qa_tree({k: clip_zoo[k] for k in BAD})
    ds = build_dataset(_cfg(root), "validation", TOK)
    batches = list(eval_loader(ds, collate, 2, num_workers=workers))
    assert sum(len(b["clip_id"]) for b in batches) == len(BAD)
    for b in batches:
        assert not b["sample_valid"].any() and not b["frame_mask"].any()
        assert (b["labels"] == IGNORE_INDEX).all()


def _write_gt(root, clip_id):
    boxes = [[[2 * k, 0, 2 * k + 8, 12]] for k in range(20)]
    gt = {"width": 64, "height": 48, "fps": 5, "num_frames": 20, "boxes": boxes}
    path = root / "raw/fixture/ground_truth/validation" / f"{clip_id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(gt))


def test_object_mask_from_ground_truth(qa_tree, clip_zoo):
    root = qa_tree({"c0": None, "gone": clip_zoo["missing"]})
    for cid in ("c0", "gone"):
        _write_gt(root, cid)
    ds = build_dataset(
        _cfg(root, ground_truth=True, frame_size=32, max_frames=10), "validation", TOK
    )
    item = ds[0]
    mask = item["object_mask"]
    assert mask.shape == (10, 32, 32) and mask.dtype == torch.bool
    for f in range(8):
        k = round(float(item["timestamps"][f]) * 5)
        want = torch.zeros(32, 32, dtype=torch.bool)
        want[0:8, k : k + 4] = True  # x: [2k, 2k+8)·0.5, y: [0, 12)·32/48
        assert torch.equal(mask[f], want), f
    assert not mask[8:].any()
    assert not ds[1]["object_mask"].any()


def test_missing_ground_truth_is_a_build_error(qa_tree):
    root = qa_tree({"c0": None, "c1": None})
    _write_gt(root, "c0")
    with pytest.raises(FileNotFoundError, match=r"1 of 2 clips have no ground-truth file.*c1"):
        build_dataset(_cfg(root, ground_truth=True), "validation", TOK)
    assert "object_mask" not in build_dataset(_cfg(root), "validation", TOK)[0]


def test_frame_cache_hit_is_identical_and_skips_decoding(qa_tree, monkeypatch):
    root = qa_tree({"c0": None})
    calls = []
    real = base_module.load_clip

    def spy(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(base_module, "load_clip", spy)
    first = build_dataset(_cfg(root), "validation", TOK)[0]
    assert len(calls) == 1 and len(list((root / ".cache/frames").glob("*.npy"))) == 1
    again = build_dataset(_cfg(root), "validation", TOK)[0]  # a new dataset: another sweep cell
    assert len(calls) == 1
    for key in ("pixel_values", "frame_mask", "timestamps"):
        assert torch.equal(first[key], again[key]), key
    build_dataset(_cfg(root, frame_size=32), "validation", TOK)[0]
    assert len(calls) == 2  # different decode settings → different key
    build_dataset(_cfg(root, cache_frames=False), "validation", TOK)[0]
    assert len(calls) == 3
    video = root / "raw/videos/validation/c0.mp4"
    write_mp4(video, coded_frames(30), fps=5)  # edited clip → new size/mtime → miss
    build_dataset(_cfg(root), "validation", TOK)[0]
    assert len(calls) == 4


def test_pixels_match_direct_decode(qa_tree):
    root = qa_tree({"c0": None})
    cfg = _cfg(root, cache_frames=False)
    item = build_dataset(cfg, "validation", TOK)[0]
    frames, _ = decode_frames(
        root / "raw/videos/validation/c0.mp4", [i * 3.8 / 7 for i in range(8)], 64
    )
    expected = normalize_frames(frames, cfg.pixel_mean, cfg.pixel_std)
    assert torch.equal(item["pixel_values"], expected)
    # negative control: SigLIP's 0.5/0.5 is a different normalisation from the synthetic default
    assert not torch.allclose(item["pixel_values"], normalize_frames(frames))


def test_collate_shapes_and_mismatch_errors(qa_tree):
    root = qa_tree({"c0": None, "c1": None})
    ds = build_dataset(_cfg(root), "validation", TOK)
    batch = collate([ds[0], ds[1]])
    assert batch["pixel_values"].shape == (2, 8, 3, 64, 64)
    assert batch["frame_mask"].shape == (2, 8) and batch["input_ids"].shape == (2, 24)
    assert batch["sample_valid"].shape == (2,) and batch["clip_id"] == ["c0", "c1"]
    longer = build_dataset(_cfg(root, max_text_len=30), "validation", TOK)[1]
    with pytest.raises(ValueError, match="field 'input_ids' of sample 1 has shape"):
        collate([ds[0], longer])
    more = build_dataset(_cfg(root, max_frames=10), "validation", TOK)[1]
    with pytest.raises(ValueError, match="field 'pixel_values'"):
        collate([ds[0], more])


def test_only_the_synthetic_benchmark_is_generated_a_typo_is_an_error(tmp_path, monkeypatch):
    from core.data import prepare_data
    from core.data import synthetic as synthetic_module

    calls = []
    monkeypatch.setattr(synthetic_module, "ensure_synthetic", lambda *a, **k: calls.append(a))
    (tmp_path / "raw" / "synthetic").mkdir(parents=True)
    prepare_data(DataConfig(data_root=str(tmp_path)))
    assert len(calls) == 1  # the synthetic benchmark: generated (or found) on first use
    typo = DataConfig(data_root=str(tmp_path), dataset_name="synthetc")
    with pytest.raises(FileNotFoundError) as err:
        prepare_data(typo)
    message = str(err.value)
    assert "data.dataset_name='synthetc'" in message and str(tmp_path / "raw/synthetc") in message
    assert "did you mean data.dataset_name=synthetic" in message
    assert len(calls) == 1 and not (tmp_path / "raw" / "synthetc").exists()
    for kind in ("webvid", "qa_jsonl"):  # never a stand-in under the user's dataset name
        with pytest.raises(FileNotFoundError, match="no dataset|no " + kind):
            prepare_data(
                DataConfig(data_root=str(tmp_path), dataset_type=kind, dataset_name="mine")
            )
    assert len(calls) == 1
