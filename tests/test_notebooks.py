"""analysis/notebooks/figures.ipynb runs top to bottom against the fixture tree."""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

from tests.results_fixture import build_results_tree  # noqa: E402

NOTEBOOK = Path(__file__).resolve().parents[1] / "analysis" / "notebooks" / "figures.ipynb"


def test_figures_notebook_executes(tmp_path, monkeypatch):
    tree = build_results_tree(tmp_path / "results")
    out = tmp_path / "figures"
    monkeypatch.setenv("RESULTS_ROOT", str(tree.root))
    monkeypatch.setenv("GRID", "prune_sweep")
    monkeypatch.setenv("FIGURES_OUT", str(out))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    client.execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "".join(o.get("text", "") for o in outputs)
    assert "[failed] prune_sweep/" in text  # the load report is shown
    markdown = "".join(o.get("data", {}).get("text/markdown", "") for o in outputs)
    assert "efficiency–accuracy" in markdown and "75.0 ± 1.0" in markdown
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 8  # the six result figures, the by-stage one, the training curves
    assert sorted(p.name for p in (out / "prune_sweep").glob("*.pdf")) == sorted(
        f"{n}.pdf"
        for n in (
            "accuracy_vs_ratio",
            "accuracy_vs_speedup",
            "accuracy_vs_speedup_by_stage",
            "accuracy_vs_gflops",
            "layer_ablation",
            "arch_comparison",
            "keep_example",
            "training_curves",
        )
    )
