"""Tables in CSV/Markdown/LaTeX, state markers, LaTeX escaping, and Pareto frontiers."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from analysis.aggregate import aggregate
from analysis.load import load_results
from analysis.pareto import add_frontiers, pareto_mask
from analysis.tables import efficiency_table, latex_escape, to_latex, to_markdown, write_tables
from tests.results_fixture import build_results_tree


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    tree = build_results_tree(tmp_path_factory.mktemp("results"))
    cells, _ = load_results(tree.root)
    agg = aggregate(cells)
    out = tmp_path_factory.mktemp("tables")
    return agg, write_tables(agg, out, title="all_grids")


def test_three_formats_for_each_table(written):
    _, paths = written
    for table in ("efficiency", "pareto", "qtypes"):
        for fmt in ("csv", "md", "tex"):
            assert paths[f"{table}_{fmt}"].stat().st_size > 200, (table, fmt)


def test_csv_holds_numbers_and_states(written):
    agg, paths = written
    csv = pd.read_csv(paths["efficiency_csv"])
    assert len(csv) == len(agg)
    row = csv[
        (csv["grid"] == "prune_sweep")
        & (csv["arch"] == "joint_decoder")
        & (csv["method"] == "scorer")
        & (csv["ratio"] == 0.5)
        & (csv["layer"] == 1)
    ]
    assert row["accuracy_mean"].item() == pytest.approx(0.75)
    assert row["speedup_step_mean"].item() == pytest.approx(4 / 3)
    failed = csv[
        (csv["grid"] == "arch_sweep")
        & (csv["arch"] == "cross_attention")
        & (csv["method"] == "scorer")
    ]
    assert failed["state"].item() == "failed" and np.isnan(failed["accuracy_mean"].item())


def test_markdown_and_latex_show_new_and_failed(written):
    _, paths = written
    md = paths["efficiency_md"].read_text()
    tex = paths["efficiency_tex"].read_text()
    for text in (md, tex):
        assert "(1 new)" in text and "(1 failed)" in text and "(1 incomplete)" in text
        assert "75.0 ± 1.0" in text.replace(r"$\pm$", "±")
    # the all-failed group shows its state instead of numbers
    line = next(
        ln
        for ln in md.splitlines()
        if ln.startswith("| arch_sweep | cross-attention") and "STTS" in ln
    )
    assert "| failed |" in line
    assert "| 0/2 (2 failed) |" in line


def test_markdown_rows_have_the_header_width(written):
    _, paths = written
    lines = [ln for ln in paths["efficiency_md"].read_text().splitlines() if ln.startswith("|")]
    widths = {ln.count(" | ") for ln in lines}
    assert len(widths) == 1


def test_latex_is_booktabs_with_escaped_underscores(written):
    _, paths = written
    tex = paths["efficiency_tex"].read_text()
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex
    assert "joint decoder" in tex and r"prune\_sweep" in tex  # the arch's label; escaped grid
    assert not re.search(r"(?<!\\)_", tex.split(r"\label")[0])  # every _ escaped
    spec = re.search(r"\\begin\{tabular\}\{(\w+)\}", tex).group(1)
    for line in tex.splitlines():
        if line.endswith(r"\\"):
            assert line.count(" & ") == len(spec) - 1, line
    for bad in ("±", "×", "Δ", "−"):
        assert bad not in tex


def test_latex_escape():
    assert latex_escape("a_b & 50% #1 {x} ~ ^") == (
        r"a\_b \& 50\% \#1 \{x\} \textasciitilde{} \textasciicircum{}"
    )
    assert latex_escape("1.0 ± 0.1 Δ 2×") == r"1.0 $\pm$ 0.1 $\Delta$ 2$\times$"
    assert latex_escape(r"\cmd") == r"\textbackslash{}cmd"


def test_empty_tables_render():
    assert "no rows" in to_markdown(pd.DataFrame())
    assert to_latex(pd.DataFrame()).startswith("%")


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not on PATH")
def test_latex_compiles(written, tmp_path):
    _, paths = written
    body = "\n".join(paths[f"{t}_tex"].read_text() for t in ("efficiency", "pareto", "qtypes"))
    doc = tmp_path / "doc.tex"
    doc.write_text(
        "\\documentclass{article}\n\\usepackage[utf8]{inputenc}\n"
        "\\usepackage{booktabs,graphicx}\n\\usepackage[margin=0.5in,landscape]{geometry}\n"
        f"\\begin{{document}}\n{body}\n\\end{{document}}\n"
    )
    proc = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 1000
    assert "Overfull \\hbox" not in (tmp_path / "doc.log").read_text()  # scaled to fit


# ---- Pareto ---------------------------------------------------------------------------------------


def test_pareto_mask_min_cost_max_accuracy():
    cost = np.array([1.0, 2.0, 3.0, 2.0, 4.0, np.nan])
    acc = np.array([0.5, 0.7, 0.8, 0.6, 0.8, 0.99])
    # (2, 0.6) dominated by (2, 0.7); (4, 0.8) dominated by (3, 0.8); NaN never on the front
    assert pareto_mask(cost, acc, maximize_x=False).tolist() == [
        True,
        True,
        True,
        False,
        False,
        False,
    ]


def test_pareto_mask_max_speedup_max_accuracy():
    speed = np.array([1.0, 1.5, 2.0, 1.5])
    acc = np.array([0.8, 0.7, 0.6, 0.65])
    assert pareto_mask(speed, acc, maximize_x=True).tolist() == [True, True, True, False]
    # negative control: read as a cost, faster is worse and only the cheapest-best survives
    assert pareto_mask(speed, acc, maximize_x=False).tolist() == [True, False, False, False]


def test_pareto_ties_within_float_noise_do_not_create_points():
    cost = np.array([3.0, 3.0 + 1e-15])
    acc = np.array([0.7, 0.5])
    assert pareto_mask(cost, acc, maximize_x=False).tolist() == [True, False]


def test_frontier_per_arch(written):
    agg, paths = written
    marked = add_frontiers(agg[agg["grid"] == "prune_sweep"])
    jd = marked[(marked["arch"] == "joint_decoder") & marked["on_front_gflops"]]
    assert set(zip(jd["method"], jd["ratio"], jd["layer"], strict=True)) == {
        ("none", 0.0, 1),
        ("scorer", 0.5, 1),
        ("scorer", 0.7, 1),
    }
    md = paths["pareto_md"].read_text()
    assert "random" not in md  # random is dominated by STTS at equal cost everywhere


def test_pareto_cost_near_ties_keep_the_more_accurate_point():
    # random's scoring is 0.02 % cheaper than heuristic's at the same kept-token budget
    cost = np.array([3.0, 3.0 * (1 - 2e-4)])
    acc = np.array([0.7, 0.5])
    assert pareto_mask(cost, acc, maximize_x=False).tolist() == [True, False]
    assert pareto_mask(cost, acc, maximize_x=False, x_rtol=0.0).tolist() == [True, True]


def _rewrite_display(root, edit) -> None:
    for path in root.glob("*/*/result.json"):
        try:
            result = json.loads(path.read_text())
        except json.JSONDecodeError:
            continue  # the fixture's torn result
        edit(result)
        path.write_text(json.dumps(result))


def test_labels_order_and_flags_come_from_the_cells_display(tmp_path):
    tree = build_results_tree(tmp_path)

    def edit(result):
        method = result["display"]["method"]
        if method["key"] == "scorer":
            method["label"] = "STTS v2"
        if method["key"] == "random":
            method.update(order=99, uses_ground_truth=True)  # now an upper bound, listed last

    _rewrite_display(tree.root, edit)
    cells, _ = load_results(tree.root, "prune_sweep")
    agg = add_frontiers(aggregate(cells))
    shown, _ = efficiency_table(agg)
    jd = shown[shown["Arch"] == "joint decoder"]  # the arch's display label, as in the figures
    assert list(dict.fromkeys(jd["Method"])) == [
        "unpruned",
        "easy",
        "heuristic",
        "STTS v2",
        "random",
    ]
    assert not agg.loc[agg["method"] == "random", "on_front_gflops"].any()
    assert set(jd.loc[jd["Method"] == "unpruned", "Layer"]) == {"–"}  # the reference: no layer


def test_results_without_display_fall_back_to_keys_and_ratio_zero_reference(tmp_path):
    tree = build_results_tree(tmp_path)
    _rewrite_display(tree.root, lambda result: result.pop("display"))
    cells, report = load_results(tree.root, "prune_sweep")
    agg = aggregate(cells)
    assert any("no display metadata for method" in m for m in report.messages)
    shown, _ = efficiency_table(agg)
    assert "scorer" in set(shown["Method"]) and "STTS" not in set(shown["Method"])
    methods = list(dict.fromkeys(agg[agg["arch"] == "joint_decoder"]["method"]))
    assert methods == ["easy", "heuristic", "none", "random", "scorer"]  # alphabetical
    g = agg[(agg["method"] == "scorer") & (agg["ratio"] == 0.5) & (agg["layer"] == 1)]
    assert g[g["arch"] == "joint_decoder"]["delta_accuracy_mean"].item() == pytest.approx(-0.05)
