"""Every paper figure from the fixture tree: PDF + PNG, skips with reasons, keep-example details."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.patches import Rectangle

from analysis.data import GridData
from analysis.display import DISPLAY_COLUMNS
from paper_figures import (
    accuracy_vs_gflops,
    accuracy_vs_ratio,
    accuracy_vs_speedup,
    arch_comparison,
    keep_example,
    layer_ablation,
    style,
    training_curves,
)
from paper_figures.common import SkipFigure
from paper_figures.make_all import FIGURES, main, make_all
from paper_figures.style import METHOD_STYLES, method_style, new_figure
from tests.results_fixture import FRAMES, accuracy, build_results_tree, kept_tokens

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
        pdf, png, txt, tex = paths
        assert pdf == out / "prune_sweep" / f"{name}.pdf"
        assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 5000, name
        assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 20000, name
        # the caption beside the figure: plain and LaTeX-escaped, headline first
        assert txt.name == f"{name}.caption.txt" and tex.name == f"{name}.caption.tex"
        caption = txt.read_text()
        assert caption.startswith("prune_sweep: ") and caption.count(". ") >= 1, name
        assert r"prune\_sweep" in tex.read_text() and "±" not in tex.read_text(), name


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
    pdf, png, *_ = accuracy_vs_ratio.make(renamed, tmp_path)
    assert png.stat().st_size > 20000


def test_figures_skip_when_nothing_is_done(tmp_path):
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
    assert "[nope] skipped: no such grid" in text and "6 figure(s) written" in text
    assert (tmp_path / "arch_sweep" / "accuracy_vs_gflops.pdf").is_file()
    assert main(["--results", str(tmp_path / "empty")]) == 1


# ---- what the figures show ------------------------------------------------------------------------

ACCURACY_FIGURES = (
    accuracy_vs_ratio,
    accuracy_vs_speedup,
    accuracy_vs_gflops,
    layer_ablation,
    training_curves,
)


@pytest.fixture
def drawn(monkeypatch):
    """The Figure objects the figure modules save, by file stem."""
    figures: dict = {}
    save = style.save

    def keep(fig, out_dir, stem, dpi=200):
        figures[stem] = fig
        return save(fig, out_dir, stem, dpi=60)

    monkeypatch.setattr(style, "save", keep)
    return figures


@pytest.fixture(scope="module")
def prune_data(tmp_path_factory):
    tree = build_results_tree(tmp_path_factory.mktemp("results"))
    return GridData.load(tree.root, "prune_sweep")


def protocol_data(data: GridData, variant: str = "") -> GridData:
    """The fixture grid under the paper's protocol: every cell fine-tuned from a base (the
    unpruned cells, once more as protocol base, 1 pp lower), random and easy also zero-shot on it
    (10 pp lower); with `variant`, the scorer cells once more as that variant (2 pp lower)."""
    cells = data.cells.assign(protocol="finetune", variant="")
    done = cells["state"] == "done"
    base = cells[done & (cells["method"] == "none")].assign(protocol="base")
    base["accuracy"] -= 0.01
    zero = cells[done & cells["method"].isin(["random", "easy"])].assign(protocol="zeroshot")
    zero["accuracy"] -= 0.10
    extra = [base, zero]
    if variant:
        var = cells[done & (cells["method"] == "scorer")].assign(variant=variant)
        var["accuracy"] -= 0.02
        extra.append(var)
    for i, part in enumerate(extra):
        part["cell_id"] = part["cell_id"] + f"-{i}"
    keep = [c for c in cells.columns if not c.startswith(("ref_", "delta_", "speedup_", "memory_"))]
    keep += ["speedup_train_measured"]
    merged = pd.concat([cells, *extra], ignore_index=True)[list(dict.fromkeys(keep))]
    return GridData.from_cells(data.root, data.grid, merged)


def marker_lines(ax) -> list:
    """The plotted lines with a data marker (not error-bar caps, not reference lines)."""
    return [
        line
        for line in ax.lines
        if line.get_marker() not in (None, "None", "", " ", "_", "|") and len(line.get_xdata())
    ]


def overlapping_markers(fig) -> list[tuple]:
    """Pairs of markers (per axes) whose centres, as drawn, are closer than their half sizes."""
    fig.draw_without_rendering()
    pt = fig.dpi / 72.0
    pairs = []
    for ax in fig.axes:
        points = []
        for line in marker_lines(ax):
            xy = line.get_transform().transform(line.get_xydata()) / pt
            points += [
                (p, line.get_markersize(), line.get_label()) for p in xy if np.isfinite(p).all()
            ]
        for i, (p, size, label) in enumerate(points):
            for q, other, label2 in points[i + 1 :]:
                reach = (size + other) / 2
                if abs(p[0] - q[0]) < reach and abs(p[1] - q[1]) < reach:
                    pairs.append((label, label2, tuple(p.round(1))))
    return pairs


def equal_accuracy(data: GridData, chance: float = float("nan")) -> GridData:
    """Every cell with the same accuracy (and `chance`): a degenerate grid."""
    cells = data.cells.assign(accuracy=0.5, chance=chance)
    return GridData.from_cells(data.root, data.grid, cells)


def test_no_marker_hides_another_even_when_all_points_coincide(prune_data, drawn, tmp_path):
    data = protocol_data(equal_accuracy(prune_data, chance=0.3))
    for module in (accuracy_vs_speedup, accuracy_vs_gflops, accuracy_vs_ratio, layer_ablation):
        module.make(data, tmp_path)
        fig = drawn[module.NAME]
        assert len(marker_lines(fig.axes[0])) >= 6, module.NAME  # many groups at one spot
        assert overlapping_markers(fig) == [], module.NAME
        assert "drawn side by side" in style.caption_text(fig), module.NAME


def test_equal_accuracies_get_a_readable_axis(prune_data, drawn, tmp_path):
    data = equal_accuracy(prune_data)  # no chance recorded either
    for module in (accuracy_vs_speedup, accuracy_vs_ratio, layer_ablation):
        module.make(data, tmp_path)
        lo, hi = drawn[module.NAME].axes[0].get_ylim()
        assert hi - lo >= 10 and lo < 50 < hi, (module.NAME, lo, hi)


def _chance_lines(ax) -> list[float]:
    return [
        line.get_ydata()[0]
        for line in ax.lines
        if line.get_label() == "chance" and line.get_linestyle() == ":"
    ]


def test_every_accuracy_axis_has_a_chance_line(prune_data, drawn, tmp_path):
    for module in ACCURACY_FIGURES:
        module.make(prune_data, tmp_path)
        fig = drawn[module.NAME]
        # every panel is an accuracy axis, but the training curves' top row (loss)
        axes = fig.axes[len(fig.axes) // 2 :] if module is training_curves else fig.axes
        assert axes, module.NAME
        for ax in axes:
            assert _chance_lines(ax) == [pytest.approx(30.0)], module.NAME
            assert ax.get_ylim()[0] < 30.0, module.NAME
    data = GridData.load(prune_data.root, "arch_sweep")
    arch_comparison.make(data, tmp_path)
    assert _chance_lines(drawn[arch_comparison.NAME].axes[0]) == [pytest.approx(30.0)]


def test_protocol_shown_filled_fine_tuned_hollow_base_weights(prune_data, drawn, tmp_path):
    data = protocol_data(prune_data)
    accuracy_vs_speedup.make(data, tmp_path)
    fig = drawn[accuracy_vs_speedup.NAME]
    done = data.done
    for ax, arch in zip(fig.axes, data.archs, strict=True):
        lines = marker_lines(ax)
        hollow = [ln for ln in lines if ln.get_markerfacecolor() in ("white", (1, 1, 1, 1))]
        part = done[done["arch"] == arch]
        expected_hollow = part["protocol"].isin(["zeroshot", "base"]).sum()
        assert len(hollow) == expected_hollow and len(lines) == len(part)
        stars = [ln for ln in lines if ln.get_marker() == "*"]
        assert len(stars) == 2 and sum(ln in hollow for ln in stars) == 1  # base hollow, ft filled
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "fine-tuned (filled)" in labels and "base weights (hollow)" in labels
    assert "unpruned (base)" in labels and "unpruned (fine-tuned)" in labels
    assert "zero-shot" in style.caption_text(fig)


def test_variants_keep_their_colour_and_get_their_own_marker(prune_data, drawn, tmp_path):
    data = protocol_data(prune_data, variant="no_aux")
    accuracy_vs_gflops.make(data, tmp_path)
    fig = drawn[accuracy_vs_gflops.NAME]
    lines = {c.get_label(): c.lines[0] for ax in fig.axes for c in ax.containers}
    plain, variant = lines["STTS"], lines["STTS (no_aux)"]
    assert plain.get_color() == variant.get_color() == METHOD_STYLES["scorer"].color
    assert plain.get_marker() != variant.get_marker()
    assert "STTS (no_aux)" in {t.get_text() for t in fig.legends[0].get_texts()}
    assert "a variant: its own marker" in style.caption_text(fig)


def test_no_titles_leaves_the_headline_to_the_caption(prune_data, drawn, tmp_path):
    accuracy_vs_ratio.make(prune_data, tmp_path / "with")
    with style.figure_options(titles=False):
        accuracy_vs_ratio.make(prune_data, tmp_path / "without")
    # the figure saved last has no title; the caption file still starts with the headline
    assert drawn[accuracy_vs_ratio.NAME].get_suptitle() == ""
    caption = (tmp_path / "without" / "accuracy_vs_ratio.caption.txt").read_text()
    with_titles = (tmp_path / "with" / "accuracy_vs_ratio.caption.txt").read_text()
    first = caption.split("Points that")[0]  # the shifts depend on the layout, the rest not
    assert len(first) > 200 and with_titles.startswith(first)
    assert caption.startswith("prune_sweep: accuracy vs kept visual tokens. ")
    # some groups of the fixture have seeds not done: 1 to 3 seeds per point
    assert "error bars: std over 1–3 seeds (mean shown)" in caption


def test_titles_are_one_line_headlines(prune_data, drawn, tmp_path):
    for module in FIGURES:
        try:
            module.make(prune_data, tmp_path)
        except SkipFigure:
            continue
        title = drawn[module.NAME].get_suptitle()
        assert title.startswith("prune_sweep: ") and title.count("\n") == 0, module.NAME


def test_cli_no_titles(made, tmp_path, capsys):
    tree, _, _, _ = made
    args = ["--results", str(tree.root), "--grid", "prune_sweep", "--out", str(tmp_path)]
    assert main([*args, "--no-titles"]) == 0
    assert (tmp_path / "prune_sweep" / "training_curves.caption.tex").is_file()


def test_figures_and_tables_use_the_same_names(prune_data, drawn, tmp_path):
    from analysis.tables import efficiency_table

    shown, _ = efficiency_table(prune_data.agg)
    accuracy_vs_speedup.make(prune_data, tmp_path)
    fig = drawn[accuracy_vs_speedup.NAME]
    legend = {t.get_text() for t in fig.legends[0].get_texts()}
    assert set(shown["Method"]) <= legend  # every method the table names, named alike
    assert "STTS" in legend and "scorer" not in legend
    panels = {ax.get_title().split("\n")[0] for ax in fig.axes}
    assert panels == set(shown["Arch"]) == {"joint decoder", data_label(prune_data, "mot")}


def data_label(data: GridData, arch: str) -> str:
    return data.labels.label("arch", arch)


# ---- training curves ------------------------------------------------------------------------------


def test_curve_is_mean_std_over_seeds_per_step_and_counts_a_repeated_step_once():
    rows = pd.DataFrame(
        {
            "cell_id": ["a", "a", "a", "b", "b"],
            "step": [10, 20, 20, 10, 20],  # cell a repeated step 20 (a requeued run)
            "train/loss": [1.0, 9.0, 0.5, 3.0, 1.5],
        }
    )
    stats = training_curves.curve(rows, "train/loss").set_index("step")
    assert stats.loc[10, "mean"] == 2.0 and stats.loc[10, "std"] == pytest.approx(np.sqrt(2))
    assert stats.loc[20, "mean"] == 1.0 and stats.loc[20, "n"] == 2  # the last value of a's 20


def test_training_curves_plot_the_fixture_losses(prune_data, drawn, tmp_path):
    training_curves.make(prune_data, tmp_path)
    fig = drawn[training_curves.NAME]
    loss_ax = fig.axes[0]  # joint decoder, trained from scratch (the fixture has no protocol)
    assert loss_ax.get_title() == "joint decoder · from scratch"
    line = next(ln for ln in loss_ax.lines if ln.get_label() == "STTS")
    # the fixture logs loss = 2 - acc * step / 100; mean over seeds 0..2 at ratio 0.5, layer 1
    accs = [accuracy("joint_decoder", "scorer", 0.5, 1, s) for s in (0, 1, 2)]
    steps = np.asarray(line.get_xdata(), dtype=float)
    expected = [np.mean([2.0 - a * s / 100 for a in accs]) for s in steps]
    assert steps.tolist() == [0, 25, 50, 75, 100]
    assert np.allclose(line.get_ydata(), expected)
    acc_ax = fig.axes[len(fig.axes) // 2]
    assert _chance_lines(acc_ax) == [pytest.approx(30.0)]


def test_training_curves_mark_a_task_switch(prune_data, drawn, tmp_path, monkeypatch):
    history = prune_data.history.copy()
    history["train/task"] = np.where(history["step"] < 50, "caption", "qa")
    monkeypatch.setattr(prune_data, "history", history)
    training_curves.make(prune_data, tmp_path)
    loss_ax = drawn[training_curves.NAME].axes[0]
    vertical = [ln for ln in loss_ax.lines if np.allclose(ln.get_xdata(), 50)]
    assert len(vertical) == 1
    assert {t.get_text() for t in loss_ax.texts} >= {"caption", "qa"}


def test_training_curves_show_zero_shot_at_step_zero(prune_data, drawn, tmp_path):
    data = protocol_data(prune_data)
    training_curves.make(data, tmp_path)
    fig = drawn[training_curves.NAME]
    titles = [ax.get_title() for ax in fig.axes[: len(fig.axes) // 2]]
    assert titles == ["joint decoder · fine-tuned", "MoT · fine-tuned"]  # the bases: no history
    ft_acc = fig.axes[len(fig.axes) // 2 + titles.index("joint decoder · fine-tuned")]
    at_zero = [ln for ln in marker_lines(ft_acc) if np.allclose(ln.get_xydata()[:, 0], 0.0)]
    # the base (hollow star) and random, easy zero-shot: hollow, at step 0
    assert len(at_zero) == 3
    assert all(ln.get_markerfacecolor() in ("white", (1, 1, 1, 1)) for ln in at_zero)


def test_training_curves_skip_without_logged_loss(prune_data, tmp_path, monkeypatch):
    monkeypatch.setattr(prune_data, "history", pd.DataFrame(columns=["cell_id", "step", "phase"]))
    with pytest.raises(SkipFigure, match="train/loss"):
        training_curves.make(prune_data, tmp_path)
