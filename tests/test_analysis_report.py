"""write_grid_outputs (the launcher's collect step), the HTML report and `python -m analysis`."""

from __future__ import annotations

import base64
import json
import re

import pytest

from analysis.__main__ import main
from analysis.report import default_out_dir, write_grid_outputs
from tests.results_fixture import build_results_tree

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    tree = build_results_tree(tmp_path_factory.mktemp("results"))
    out = tmp_path_factory.mktemp("report")
    return tree, out, write_grid_outputs(tree.root, "prune_sweep", out, log=lambda _: None)


def test_all_outputs_exist(outputs):
    _, out, paths = outputs
    for key in (
        "html",
        "load_report",
        "cells_csv",
        "efficiency_csv",
        "efficiency_md",
        "efficiency_tex",
        "pareto_tex",
        "qtypes_md",
    ):
        assert paths[key].is_file() and paths[key].stat().st_size > 0, key
        assert out in paths[key].parents
    figures = sorted(k for k in paths if k.startswith("figure_"))
    assert len(figures) == 12  # six figures × (pdf, png)


def test_html_is_one_self_contained_file(outputs):
    _, _, paths = outputs
    text = paths["html"].read_text()
    assert not re.search(r"""(src|href)=["'](?!data:)""", text)  # no external files or URLs
    images = re.findall(r"src='data:image/png;base64,([^']+)'", text)
    assert len(images) == 6
    assert all(base64.b64decode(img)[:8] == PNG_MAGIC for img in images)
    # load report, failed/missing cells with reasons, hardware
    for needle in (
        "jd-scorer-r0.7-l2-s2",
        "loss is NaN",
        "mot-random-r0.7-l1-s1",
        "missing",
        "fixture-cpu",
        "Efficiency–accuracy",
        "Pareto frontier",
        "not in plan.json",
    ):
        assert needle in text, needle
    assert "<tr class='bad'>" in text and "<tr class='warn'>" in text


def test_all_missing_grid_still_reports(tmp_path):
    grid = tmp_path / "g"
    grid.mkdir()
    cells = [
        {
            "cell_id": f"c{i}",
            "name": f"mot-scorer-s{i}",
            "axes": {"arch": "mot", "method": "scorer", "ratio": 0.5, "layer": 1, "seed": i},
        }
        for i in range(2)
    ]
    (grid / "plan.json").write_text(json.dumps({"grid": "g", "cells": cells}))
    logs = []
    paths = write_grid_outputs(tmp_path, "g", log=logs.append)
    assert paths["html"].parent == default_out_dir(tmp_path, "g")
    assert not any(k.startswith("figure_") for k in paths)
    assert len(logs) == 6 and all("skipped" in line for line in logs)
    assert "| missing |" in paths["efficiency_md"].read_text()
    assert "2 missing" in paths["load_report"].read_text()
    assert "skipped accuracy_vs_ratio" in paths["html"].read_text()


def test_unknown_grid_names_the_available_ones(outputs):
    tree, _, _ = outputs
    with pytest.raises(FileNotFoundError, match="available: arch_sweep, prune_sweep"):
        write_grid_outputs(tree.root, "nope", tree.root / "x")


def test_cli_several_grids(outputs, tmp_path, capsys):
    tree, _, _ = outputs
    rc = main(
        [
            "--results",
            str(tree.root),
            "--grid",
            "prune_sweep",
            "--grid",
            "arch_sweep",
            "--out",
            str(tmp_path),
            "--no-figures",
        ]
    )
    text = capsys.readouterr().out
    assert rc == 0
    assert (tmp_path / "prune_sweep" / "report.html").is_file()
    assert (tmp_path / "arch_sweep" / "tables" / "efficiency.tex").is_file()
    assert "[failed] prune_sweep/" in text and "HTML report" in text


def test_cli_empty_tree_and_unknown_grid(tmp_path, capsys):
    assert main(["--results", str(tmp_path)]) == 1
    assert "empty results tree" in capsys.readouterr().out
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "plan.json").write_text(json.dumps({"grid": "g", "cells": []}))
    assert main(["--results", str(tmp_path), "--grid", "other"]) == 1
    assert "grid 'other' not found" in capsys.readouterr().out


def test_analysis_and_figures_never_import_core():
    import subprocess
    import sys

    code = (
        "import sys, analysis.load, analysis.aggregate, analysis.tables, analysis.pareto, "
        "analysis.report, analysis.wandb_join, paper_figures.make_all\n"
        "bad = sorted(m for m in sys.modules if m == 'core' or m.startswith('core.'))\n"
        "assert not bad, bad\n"
        "assert 'wandb' not in sys.modules  # W&B is imported only for an online join\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
