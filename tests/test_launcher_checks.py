"""Errors a user can cause are one message (exit 2), found before any cell folder is created:
devices, manifests (missing, unparsable, not UTF-8), a grid YAML syntax error, unreadable
results-tree files, read-only storage, and names that would reach a shell or a path."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import pytest

from ablations import app, hydra_conf
from ablations.profiles import ProfileError, validate_profile

BASE = ["grid=smoke", "cell_fn=tests.launcher_cells:count_cell", "collect=false", "backend=inline"]
ROW = {"video": "v.mp4", "question": "what?", "answer": "a", "caption": "a clip"}


def launch(root: Path, *overrides: str) -> int:
    args = [*BASE, f"results_root={root}", *overrides]
    return app.main(hydra_conf.compose_launch(args), args)


def cell_dirs(root: Path) -> list[str]:
    grid = root / "smoke"
    return (
        sorted(p.name for p in grid.iterdir() if not p.name.startswith("_"))
        if grid.exists()
        else []
    )


def refused(root: Path, capsys: pytest.CaptureFixture[str], *overrides: str) -> str:
    """Launch, expect the one-message refusal, and that no cell folder was created."""
    assert launch(root / "results", *overrides) == 2
    out = capsys.readouterr().out
    assert out.startswith("error: ") and "Traceback" not in out, out
    assert cell_dirs(root / "results") == []
    return out


def dataset(root: Path, lines: list[bytes]) -> list[str]:
    """A qa_jsonl dataset `mine` whose train and validation manifests hold `lines`."""
    qa = root / "data" / "raw" / "mine" / "qa"
    qa.mkdir(parents=True)
    for split in ("train", "validation"):
        (qa / f"{split}.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    return [f"data.data_root={root / 'data'}", "data.dataset_name=mine"]


def test_cuda_cells_without_cuda_are_refused_before_any_cell_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is visible here")
    out = refused(tmp_path, capsys, "train.device=cuda")
    assert "train.device=cuda: no CUDA device is visible" in out and "Fix:" in out
    assert launch(tmp_path / "results", "train.device=cuda", "dry_run=true") == 0  # shown only
    assert "warning: the cells cannot run:" in capsys.readouterr().out


def test_a_missing_dataset_is_refused_naming_the_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = refused(tmp_path, capsys, f"data.data_root={tmp_path / 'data'}", "data.dataset_name=mine")
    assert str(tmp_path / "data" / "raw" / "mine") in out


def test_a_bad_manifest_line_is_refused_naming_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = dataset(tmp_path, [json.dumps(ROW).encode(), b"{not json"])
    out = refused(tmp_path, capsys, *data)
    assert f"{tmp_path / 'data' / 'raw' / 'mine' / 'qa' / 'train.jsonl'}:2" in out


def test_a_non_utf8_manifest_is_refused_naming_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = (
        json.dumps({**ROW, "question": "caf\u00e9"}, ensure_ascii=False)
        .encode()
        .replace(b"\xc3\xa9", b"\xe9")
    )
    data = dataset(tmp_path, [json.dumps(ROW).encode(), json.dumps(ROW).encode(), bad])
    out = refused(tmp_path, capsys, *data)
    assert "train.jsonl:3" in out and "UTF-8" in out


def test_a_grid_yaml_syntax_error_is_one_message(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    shutil.copytree(hydra_conf.CONF_DIR, conf)
    assert app.conf_problem(conf) is None
    (conf / "grid" / "broken.yaml").write_text("name: broken\naxes:\n  method: [none, random\n")
    problem = app.conf_problem(conf)
    assert problem is not None and problem.startswith(f"{conf / 'grid' / 'broken.yaml'}:4:1:")
    assert "YAML syntax error" in problem


def test_a_corrupt_status_json_is_named_and_its_cell_resumed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "results"
    assert launch(root) == 0
    cell = root / "smoke" / cell_dirs(root)[0]
    (cell / "result.json").unlink()
    (cell / "status.json").write_text("{torn")
    capsys.readouterr()
    assert launch(root, "dry_run=true") == 0
    out = capsys.readouterr().out
    assert f"warning: {cell / 'status.json'}: not valid JSON" in out and "Traceback" not in out
    assert launch(root) == 0  # the cell is resumed and its status rewritten
    assert json.loads((cell / "status.json").read_text())["state"] == "done"


def tree_snapshot(root: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in sorted(root.rglob("*"))}


def test_read_only_results_are_rechecked_and_writes_refused_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A finished grid is re-checked without writing a byte (so read-only storage works); a
    launch that must write to storage that refuses it is one message naming the file."""
    root = tmp_path / "results"
    assert launch(root) == 0
    before = tree_snapshot(root)
    capsys.readouterr()
    assert launch(root) == 0
    assert "nothing to run" in capsys.readouterr().out
    assert tree_snapshot(root) == before  # nothing written, not even plan.json

    def read_only(src: object, dst: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system", str(dst))

    monkeypatch.setattr(os, "replace", read_only)
    assert launch(root, "force=true") == 2
    out = capsys.readouterr().out
    assert "cannot write (Read-only file system)" in out and "Traceback" not in out, out
    assert "results_root=" in out


def test_a_newline_in_the_grid_name_is_refused_before_anything_reaches_sbatch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fake sbatch/srun/squeue on PATH records any call: none is made, nothing is written."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls"
    bin_dir.mkdir()
    for tool in ("sbatch", "srun", "squeue", "sinfo"):
        script = bin_dir / tool
        script.write_text(f'#!/bin/sh\necho "{tool} $*" >> {calls}\necho 1\n')
        script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    out = refused(
        tmp_path,
        capsys,
        'grid.name="smoke\ntouch /tmp/injected"',
        "backend=slurm",
        "backend.profile=local",
    )
    assert "grid.name=" in out and "plain folder name" in out
    assert not calls.exists()
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("partition", "gpu\n#SBATCH --wrap=evil"),
        ("account", "me; rm -rf /"),
        ("qos", "high $(id)"),
        ("setup", ["module load x\nrm -rf /"]),
        ("additional_parameters", {"mail_type": "END\nsrun evil"}),
    ],
)
def test_profile_values_reaching_the_sbatch_script_are_plain(key: str, value: object) -> None:
    profile = {"partition": "gpu", "account": None, "max_num_timeout": 1, "signal_delay_s": 1}
    validate_profile(profile, "p.yaml")  # the plain profile is fine
    with pytest.raises(ProfileError, match=key):
        validate_profile({**profile, key: value}, "p.yaml")


def test_developers_get_the_traceback_on_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(app.TRACEBACK_ENV, "1")
    with pytest.raises(ValueError, match="data.dataset_name='mine'"):
        launch(tmp_path / "results", f"data.data_root={tmp_path}", "data.dataset_name=mine")
