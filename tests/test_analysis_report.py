"""write_grid_outputs (the launcher's collect step), the HTML report and `python -m analysis`."""

from __future__ import annotations

import base64
import json
import re

import pytest

from analysis.cli import main
from analysis.report import default_out_dir, write_grid_outputs
from paper_figures.report import write_report
from tests.results_fixture import build_results_tree

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    tree = build_results_tree(tmp_path_factory.mktemp("results"))
    out = tmp_path_factory.mktemp("report")
    return tree, out, write_report(tree.root, "prune_sweep", out, log=lambda _: None)


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
    figures = {k.removeprefix("figure_").rsplit("_", 1)[0] for k in paths if "figure_" in k}
    # the six result figures, the by-stage figure and the training curves
    assert len(figures) == 8 and "accuracy_vs_speedup_by_stage" in figures
    for name in figures:  # each as PDF and PNG with its caption (plain text and LaTeX) beside it
        for ext in ("pdf", "png", "txt", "tex"):
            assert paths[f"figure_{name}_{ext}"].is_file(), (name, ext)


def test_html_is_one_self_contained_file(outputs):
    _, _, paths = outputs
    text = paths["html"].read_text()
    assert not re.search(r"""src=["'](?!data:)""", text)  # no external files or URLs
    # links only within the page or to cell folders (relative, no W&B run in the fixture)
    assert all(h.startswith(("#", "../")) for h in re.findall(r"href='([^']*)'", text))
    images = re.findall(r"src='data:image/png;base64,([^']+)'", text)
    assert len(images) == 8
    assert all(base64.b64decode(img)[:8] == PNG_MAGIC for img in images)
    # load report, failed/new cells with reasons, hardware
    for needle in (
        "jd-scorer-r0.7-l2-s2",
        "loss is NaN",
        "mot-random-r0.7-l1-s1",
        "planned, no cell folder",
        "fixture-cpu",
        "Efficiency–accuracy",
        "Pareto frontier",
        "not in plan.json",
    ):
        assert needle in text, needle
    assert "<tr class='bad'>" in text and "<tr class='warn'>" in text


def test_all_new_grid_still_reports(tmp_path):
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
    paths = write_report(tmp_path, "g", log=logs.append)
    assert paths["html"].parent == default_out_dir(tmp_path, "g")
    assert not any(k.startswith("figure_") for k in paths)
    assert len(logs) == 8 and all("skipped" in line for line in logs)  # every figure
    assert "| new |" in paths["efficiency_md"].read_text()
    assert "2 new" in paths["load_report"].read_text()
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


def test_analysis_reads_through_core_results_only_and_never_imports_figures():
    """analysis needs only core.results (stdlib); paper_figures builds on analysis, not back."""
    import subprocess
    import sys

    code = (
        "import sys, analysis.load, analysis.aggregate, analysis.tables, analysis.pareto, "
        "analysis.display, analysis.data, analysis.report, analysis.cli, analysis.wandb_join\n"
        "figures = [m for m in sys.modules if m.split('.')[0] == 'paper_figures']\n"
        "assert not figures, figures\n"
        "import paper_figures.make_all, paper_figures.report\n"
        "core = sorted(m for m in sys.modules if m.split('.')[0] == 'core')\n"
        "assert core == ['core', 'core.io', 'core.lease', 'core.results'], core\n"
        "assert 'torch' not in sys.modules\n"
        "assert 'wandb' not in sys.modules  # W&B is imported only for an online join\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_figures_report_cli(outputs, tmp_path, capsys):
    from paper_figures.report import main as report_main

    tree, _, _ = outputs
    args = ["--results", str(tree.root), "--grid", "arch_sweep", "--out", str(tmp_path)]
    assert report_main(args) == 0
    printed = capsys.readouterr().out
    # tables and figures listed once each, captions apart (not as tables or figures of their own)
    assert "tables/{efficiency,pareto,qtypes}.{csv,md,tex}" in printed
    (figures_line,) = [line for line in printed.splitlines() if line.startswith("  figures")]
    assert "arch_comparison" in figures_line and "caption" not in figures_line
    assert (tmp_path / "figures" / "arch_comparison.png").is_file()
    assert report_main([*args, "--no-figures"]) == 0
