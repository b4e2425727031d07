"""The results-tree contract (core.results): status.json, the result.json schema, the cell block,
plan/jobs files, one `classify` that the launcher and analysis share, and no torch needed."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ablations.status import grid_states
from analysis.load import load_results
from core.io import write_json_atomic
from core.results import (
    RESULT_KEYS,
    CellStatus,
    Liveness,
    ResultsError,
    cell_block,
    check_result,
    classify,
    git_commit,
    liveness,
    read_plan,
    read_result,
    read_status,
    record_jobs,
    write_config,
    write_result,
)
from tests.results_fixture import build_results_tree, cell_id, cell_name, result_dict


def valid_result(**changes: object) -> dict:
    axes = dict(arch="mot", method="scorer", ratio=0.5, layer=1, seed=0)
    return {**result_dict("g", "c", axes), **changes}


# ---- status.json --------------------------------------------------------------------------
def test_status_lifecycle(tmp_path):
    cell = tmp_path / "grid" / "abc"
    st = CellStatus(cell)
    st.start(host="h1", commit="c0ffee")
    s = read_status(cell)
    assert (s["state"], s["attempts"], s["host"], s["git_commit"]) == ("running", 1, "h1", "c0ffee")
    st.update(17)
    st.fail("RuntimeError: boom", step=17)
    s = read_status(cell)
    assert (s["state"], s["error"], s["failed_step"], s["step"]) == (
        "failed",
        "RuntimeError: boom",
        17,
        17,
    )
    # a requeued attempt reads the file back, counts the attempt and clears the error
    st2 = CellStatus(cell)
    st2.start(host="h2", commit="c0ffee")
    s = read_status(cell)
    assert (s["attempts"], s["error"], s["failed_step"], s["step"]) == (2, None, None, 17)
    st2.finish(step=30)
    s = read_status(cell)
    assert s["state"] == "done" and s["finished"] and s["step"] == 30
    assert set(s) == {
        "state",
        "attempts",
        "host",
        "git_commit",
        "started",
        "updated",
        "finished",
        "error",
        "failed_step",
        "step",
    }  # fmt: skip  (job ids live in jobs.json only)


def test_status_truncates_long_errors_keeping_the_tail(tmp_path):
    st = CellStatus(tmp_path)
    st.start(host="h", commit="x")
    st.fail(ValueError("x" * 10000 + "THE END"), step=None)
    err = read_status(tmp_path)["error"]
    assert err.endswith("THE END") and len(err) < 4100


def test_git_commit_of_this_repo_or_unknown(tmp_path):
    commit = git_commit()
    assert commit == "unknown" or (len(commit) == 40 and int(commit, 16) >= 0)
    assert git_commit(str(tmp_path)) == "unknown"  # not a repository


def test_corrupt_status_is_named_and_incomplete_then_rewritten(tmp_path):
    cell = tmp_path / "c"
    write_json_atomic(cell / "config.yaml", {})
    (cell / "status.json").write_text('{"state": "runn')
    with pytest.raises(ResultsError, match=r"c/status\.json: not valid JSON"):
        read_status(cell)
    found = classify(cell)
    assert found.state == "incomplete" and "status.json: not valid JSON" in found.reason
    CellStatus(cell).pending()  # the launcher's next write replaces it with a fresh record
    assert read_status(cell)["state"] == "pending"


# ---- result.json --------------------------------------------------------------------------
def test_write_result_validates_the_schema_and_writes_nothing_when_invalid(tmp_path):
    bad = valid_result(metrics=[0.5], finished=None)
    del bad["timing"]
    with pytest.raises(ResultsError) as err:
        write_result(tmp_path, bad)
    text = str(err.value)
    assert "timing: missing" in text and "metrics=[0.5]: expected an object" in text
    assert "finished=None: expected a string" in text and "Fix:" in text
    assert not (tmp_path / "result.json").exists()
    display = valid_result()["display"]
    display["method"] = {**display["method"], "order": "first", "is_reference": 1}
    with pytest.raises(ResultsError, match="display.method.order='first': expected a number"):
        write_result(tmp_path, valid_result(display=display))
    with pytest.raises(ResultsError, match="is_reference=1: expected true or false"):
        write_result(tmp_path, valid_result(display=display))
    path = write_result(tmp_path, valid_result())
    assert read_result(tmp_path) == json.loads(path.read_text())


def test_read_result_is_none_when_absent_torn_or_invalid(tmp_path):
    assert check_result(tmp_path) == (None, None)
    (tmp_path / "result.json").write_text('{"cell_id": "c", "gri')
    result, why = check_result(tmp_path)
    assert result is None and "result.json: not valid JSON" in why
    write_json_atomic(tmp_path / "result.json", {"cell_id": "c"})
    result, why = check_result(tmp_path)
    assert result is None and "grid: missing" in why
    no_display = valid_result()
    del no_display["display"]  # results written before display blocks stay readable
    write_json_atomic(tmp_path / "result.json", no_display)
    assert read_result(tmp_path) == no_display
    assert set(RESULT_KEYS) <= set(no_display)


def test_config_writer_refuses_a_cell_block_it_did_not_build(tmp_path):
    block = cell_block("abc", "g", "jd-none", {"seed": 0}, {"train.seed": 0})
    write_config(tmp_path, {"train": {"seed": 0}, "cell": block})
    assert (tmp_path / "config.yaml").is_file()
    drifted = {**block, "overrides": []}  # the hand-written copy that had drifted
    drifted.pop("grid")
    with pytest.raises(ResultsError, match="cell block"):
        write_config(tmp_path / "other", {"cell": drifted})


def test_malformed_plan_is_named(tmp_path):
    assert read_plan(tmp_path) is None
    (tmp_path / "plan.json").write_text(json.dumps({"cells": [{"name": "x"}]}))
    with pytest.raises(ResultsError, match=r"plan\.json: not a plan"):
        read_plan(tmp_path)


# ---- who holds a cell -----------------------------------------------------------------------
def test_jobs_record_the_launcher_until_a_job_id_exists(tmp_path):
    cell = tmp_path / "c"
    write_json_atomic(cell / "config.yaml", {})
    CellStatus(cell).pending()
    manifest = record_jobs(tmp_path, "local", {"c": None})  # held by this launcher, not submitted
    entry = manifest["cells"]["c"]
    assert (entry["launcher_pid"], entry["host"]) == (os.getpid(), socket.gethostname())
    assert liveness(manifest, "c").pids == (os.getpid(),)
    assert classify(cell, liveness(manifest, "c")).state == "pending"
    manifest = record_jobs(tmp_path, "local", {"c": "4242424"})  # submitted: the job decides
    assert liveness(manifest, "c").pids == (4242424,)
    assert classify(cell, liveness(manifest, "c")).state == "incomplete"
    manifest = record_jobs(tmp_path, "slurm", {"c": "77_1"})
    live = liveness(manifest, "c", queued={"77_1"})
    assert live.job_ids == ("77_1",) and live.pids == ()
    assert classify(cell, live).state == "pending"
    assert [h["job_id"] for h in manifest["cells"]["c"]["history"]] == ["4242424"]


def test_liveness_on_another_host_falls_back_to_the_heartbeat(tmp_path):
    cell = tmp_path / "c"
    write_json_atomic(cell / "config.yaml", {})
    CellStatus(cell).start(host="elsewhere", commit="x")
    live = Liveness(pids=(2**22 + 7,), host="elsewhere")  # not a pid of this machine
    assert classify(cell, live).state == "running"
    assert classify(cell, live, stale_s=0).state == "incomplete"


# ---- one state machine ----------------------------------------------------------------------
def test_launcher_and_analysis_agree_on_every_fixture_cell(tmp_path):
    tree = build_results_tree(tmp_path)
    cells, _ = load_results(tree.root)
    for grid in tree.grids:
        launcher = {r["cell_id"]: r["state"] for r in grid_states(tree.root / grid)}
        planned = cells[(cells["grid"] == grid) & cells["in_plan"]]
        analysis = dict(zip(planned["cell_id"], planned["state"], strict=True))
        assert launcher == analysis, grid
    states = set(cells["state"])
    assert states == {"new", "pending", "running", "done", "failed", "incomplete"}
    corrupt = cell_id("prune_sweep", cell_name("joint_decoder", "random", 0.5, 2, 1))
    assert launcher_state(tree.root, corrupt) == "incomplete"  # torn result.json: not done


def launcher_state(root: Path, cid: str) -> str:
    rows = {r["cell_id"]: r for r in grid_states(root / "prune_sweep")}
    return rows[cid]["state"]


def test_the_contract_needs_neither_torch_nor_numpy(tmp_path):
    """Analysis machines need no torch: import and use core.results with torch/numpy blocked."""
    code = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "numpy", "pandas"):
            raise ImportError(f"blocked: {{name}}")
sys.meta_path.insert(0, Block())
from pathlib import Path
from core import results as r
cell = Path({str(tmp_path)!r}) / "c"
r.write_config(cell, {{"train": {{}}, "cell": r.cell_block("c", "g", "c", {{}}, {{}})}})
r.CellStatus(cell).start()
result = {{k: {{}} if t is dict else "x" for k, t in r.RESULT_KEYS.items()}}
r.write_result(cell, result)
assert r.classify(cell).state == r.State.DONE and r.read_result(cell) == result
r.record_jobs(cell.parent, "inline", {{"c": "inline-1"}})
assert r.liveness(r.read_jobs(cell.parent), "c").pids == (1,)
print("ok")
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
