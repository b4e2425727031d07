"""Atomic writes and JSONL appends of core.io."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from core import io


def test_json_roundtrip_converts_numpy_torch_and_nonfinite(tmp_path):
    path = tmp_path / "sub" / "r.json"
    io.write_json_atomic(
        path,
        {
            "a": np.float32(0.5),
            "b": np.arange(3),
            "c": torch.tensor(2),
            "d": float("nan"),
            "e": (1, 2),
            "p": tmp_path,
        },
    )
    data = json.loads(path.read_text())
    assert data == {"a": 0.5, "b": [0, 1, 2], "c": 2, "d": None, "e": [1, 2], "p": str(tmp_path)}


def test_unserialisable_object_names_its_type(tmp_path):
    with pytest.raises(TypeError, match="object"):
        io.write_json_atomic(tmp_path / "x.json", {"k": object()})
    assert not (tmp_path / "x.json").exists()


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "status.json"
    io.write_json_atomic(path, {"state": "running"})

    def broken(f):
        f.write('{"state": "do')
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        io.atomic_write(path, broken)
    assert json.loads(path.read_text()) == {"state": "running"}
    assert sorted(os.listdir(tmp_path)) == ["status.json"]


def test_yaml_roundtrip_keeps_key_order(tmp_path):
    obj = {"z": 1, "a": {"y": [1, 2], "b": "text"}, "m": None}
    path = io.write_yaml_atomic(tmp_path / "c.yaml", obj)
    assert list(io.read_yaml(path)) == ["z", "a", "m"]
    assert io.read_yaml(path) == obj


def test_read_yaml_missing_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        io.read_yaml(tmp_path / "nope.yaml")


def test_read_yaml_refuses_python_tags(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("x: !!python/object/apply:os.system ['echo hi']\n")
    import yaml

    with pytest.raises(yaml.YAMLError):
        io.read_yaml(path)


def test_append_jsonl_appends_one_line_per_record(tmp_path):
    path = tmp_path / "m.jsonl"
    io.append_jsonl(path, {"step": 1, "text": "two\nlines"})
    io.append_jsonl(path, {"step": 2, "loss": float("inf")})
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    assert io.read_jsonl(path) == [{"step": 1, "text": "two\nlines"}, {"step": 2, "loss": None}]


def test_read_jsonl_skips_torn_last_line_only(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"step": 1}\n{"step": 2}\n{"ste')
    assert io.read_jsonl(path) == [{"step": 1}, {"step": 2}]
    path.write_text('{"step": 1}\n{"ste\n{"step": 3}\n')
    with pytest.raises(ValueError, match="m.jsonl:2"):
        io.read_jsonl(path)
    assert io.read_jsonl(tmp_path / "absent.jsonl") == []


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_atomic_writes_honour_the_umask_checkpoints_included(tmp_path, umask, mode):
    from core.results import cell_block, write_config
    from core.training.checkpoint import save_checkpoint

    old = os.umask(umask)
    try:
        written = [
            io.write_json_atomic(tmp_path / "status.json", {"a": 1}),
            io.write_yaml_atomic(tmp_path / "config.yaml", {"a": 1}),
            save_checkpoint(tmp_path / "ckpt" / "last.pt", {"w": torch.zeros(2)}),
            save_checkpoint(tmp_path / "ckpt" / "last.pt", {"w": torch.ones(2)}),  # keeps prev.pt
            write_config(tmp_path / "cell", {"cell": cell_block("x", "g", "n", {}, {})}),
            append_line(tmp_path / "metrics.jsonl"),
        ]
    finally:
        os.umask(old)
    written.append(tmp_path / "ckpt" / "prev.pt")
    for path in written:
        assert os.stat(path).st_mode & 0o777 == mode, path


def append_line(path):
    io.append_jsonl(path, {"step": 1})
    return path
