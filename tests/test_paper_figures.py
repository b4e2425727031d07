"""Every paper figure from the fixture tree: PDF + PNG, skips with reasons, keep-example details."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.patches import Rectangle

from analysis.data import GridData
from analysis.display import DISPLAY_COLUMNS
from paper_figures import accuracy_vs_ratio, keep_example
from paper_figures.common import SkipFigure
from paper_figures.make_all import FIGURES, main, make_all
from paper_figures.style import METHOD_STYLES, method_style, new_figure
from tests.results_fixture import FRAMES, build_results_tree, kept_tokens

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    tree = build_results_tree(tmp_path_factory.mktemp("results"))
    out = tmp_path_factory.mktemp("figures")
    logs: list[str] = []
    return tree, out, make_all(tree.root, ["prune_sweep", "arch_sweep"], out, logs.append), logs


def test_every_figure_written_as_pdf_and_png(made):
    _, out, outcomes, _ = made
    prune = outcomes["prune_sweep"]
    assert set(prune.made) == {m.NAME for m in FIGURES} and not prune.skipped
    for name, paths in prune.made.items():
        pdf, png = paths
        assert pdf == out / "prune_sweep" / f"{name}.pdf"
        assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 5000, name
        assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 20000, name


def test_absent_data_is_skipped_with_reason(made):
    _, out, outcomes, logs = made
    arch = outcomes["arch_sweep"]
    assert "one prune layer only" in arch.skipped["layer_ablation"]
    assert "keep_example.npz" in arch.skipped["keep_example"]
    assert "arch_comparison" in arch.made  # four archs, one of them all failed
    assert any("[arch_sweep] skipped layer_ablation" in line for line in logs)
    assert not (out / "arch_sweep" / "layer_ablation.png").exists()


def test_keep_example_picks_three_methods_in_paper_order(made):
    tree, _, _, _ = made
    data = GridData.load(tree.root, "prune_sweep")
    examples, notes = keep_example.collect_examples(data)
    assert len(examples) == 3 and notes == []
    rows = keep_example.pick_slice(examples, data.labels)
    assert [ex.method for ex in rows] == ["random", "easy", "scorer"]
    assert all(int(ex.keep.sum()) == kept_tokens(0.5) for ex in rows)
    assert all(ex.keep[0].all() for ex in rows if ex.method in ("easy", "scorer"))


def test_keep_example_shades_exactly_the_dropped_windows(made):
    tree, _, _, _ = made
    data = GridData.load(tree.root, "prune_sweep")
    ex = keep_example.pick_slice(keep_example.collect_examples(data)[0], data.labels)[0]
    fig = new_figure(8, 2)
    grid = fig.add_gridspec(1, FRAMES)
    keep_example._frame_row(fig, grid, 0, ex, np.arange(FRAMES), "random")
    for f, ax in enumerate(fig.axes):
        shaded = [p for p in ax.patches if isinstance(p, Rectangle)]
        assert len(shaded) == int((~ex.keep[f]).sum())
        # the shaded rectangles cover the dropped windows' pixel boxes (16 px windows)
        boxes = {(round(p.get_x() + 0.5), round(p.get_y() + 0.5)) for p in shaded}
        dropped = {(16 * j, 16 * i) for i, j in zip(*np.nonzero(~ex.keep[f]), strict=True)}
        assert boxes == dropped


def test_window_edges():
    assert keep_example.window_edges(64, 4, 16).tolist() == [0, 16, 32, 48, 64]
    assert keep_example.window_edges(40, 3, 16).tolist() == [0, 16, 32, 40]  # ragged last
    assert keep_example.window_edges(64, 4, 2).tolist() == [0, 16, 32, 48, 64]  # even split


def test_bad_keep_file_is_reported(tmp_path):
    tree = build_results_tree(tmp_path)
    data = GridData.load(tree.root, "prune_sweep")
    bad = next(tree.root.glob("prune_sweep/*/diagnostics/keep_example.npz"))
    np.savez(bad, frames=np.zeros((2, 8, 8, 3), np.uint8))
    examples, notes = keep_example.collect_examples(data)
    assert len(examples) == 2 and "missing field(s) keep" in notes[0]


def test_unknown_method_gets_a_stable_fallback_style_and_its_key_as_label(made, tmp_path):
    style = method_style("tome")
    assert style == method_style("tome")
    assert style.color not in {s.color for s in METHOD_STYLES.values()}
    tree, _, _, _ = made
    data = GridData.load(tree.root, "prune_sweep")
    assert data.labels.label("method", "scorer") == "STTS"  # from the cells' display blocks
    # a method no result describes (an older tree): label = key, sorted after the known ones
    cells = data.cells.assign(method=data.cells["method"].replace("easy", "tome"))
    columns = list(DISPLAY_COLUMNS)
    cells[columns] = cells[columns].astype(object)
    cells.loc[cells["method"] == "tome", columns] = None
    renamed = GridData.from_cells(tree.root, "prune_sweep", cells)
    assert renamed.labels.label("method", "tome") == "tome"
    assert renamed.methods(renamed.agg) == ["none", "random", "heuristic", "scorer", "tome"]
    pdf, png = accuracy_vs_ratio.make(renamed, tmp_path)
    assert png.stat().st_size > 20000


def test_figures_skip_when_nothing_is_done(tmp_path):
    import pandas as pd

    data = GridData.from_cells(
        tmp_path,
        "g",
        pd.DataFrame(
            {
                "grid": ["g"],
                "cell_id": ["c"],
                "name": ["n"],
                "arch": ["mot"],
                "method": ["scorer"],
                "ratio": [0.5],
                "layer": [1],
                "seed": [0],
                "state": ["new"],
                "cell_dir": [None],
            }
        ),
    )
    for module in FIGURES:
        with pytest.raises(SkipFigure):
            module.make(data, tmp_path)


def test_cli(made, tmp_path, capsys):
    tree, _, _, _ = made
    assert (
        main(
            [
                "--results",
                str(tree.root),
                "--grid",
                "arch_sweep",
                "--grid",
                "nope",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "[nope] skipped: no such grid" in text and "5 figure(s) written" in text
    assert (tmp_path / "arch_sweep" / "accuracy_vs_gflops.pdf").is_file()
    assert main(["--results", str(tmp_path / "empty")]) == 1
