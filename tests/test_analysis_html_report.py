"""The HTML report's content: what the interactive plot is given (values, looks, links), links
relative to the report, W&B run links, a self-contained page whose data block survives any name."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from analysis.data import GridData
from analysis.html_report import plot_data, render_html
from analysis.load import LoadReport
from analysis.palette import REFERENCE_MARKER, method_style
from analysis.report import default_out_dir
from core.results import WANDB_RECORD
from tests.results_fixture import build_results_tree
from tests.test_paper_figures import protocol_data


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return build_results_tree(tmp_path_factory.mktemp("results"))


@pytest.fixture(scope="module")
def data(tree):
    return GridData.load(tree.root, "prune_sweep")


def payload(page: str) -> dict:
    block = re.search(
        r"<script type='application/json' id='report-data'>(.*?)</script>", page, re.S
    )
    assert block is not None
    return json.loads(block.group(1))


def test_plot_data_carries_each_cells_values_and_the_figures_looks(data, tmp_path):
    proto = protocol_data(data)
    shown = plot_data(proto, tmp_path)
    by_id = {c["cell_id"]: c for c in shown["cells"]}
    assert len(by_id) == len(proto.cells)
    for _, cell in proto.cells.iterrows():
        row = by_id[cell["cell_id"]]
        assert (row["method"], row["protocol"], row["state"]) == (
            cell["method"],
            cell["protocol"],
            cell["state"],
        )
        if cell["state"] == "done":
            assert row["accuracy"] == pytest.approx(cell["accuracy"])
            assert row["speedup"] == pytest.approx(cell["speedup_train_measured"])
        # hollow exactly for the base's weights, the method's colour, the unpruned model a star
        assert row["filled"] == (cell["protocol"] == "finetune")
        assert row["color"] == method_style(cell["method"]).color
        assert (row["marker"] == REFERENCE_MARKER) == (cell["method"] == "none")
    assert shown["chance"] == pytest.approx(0.3)
    # series in display order: by the method's order, then protocol (fine-tuned before zero-shot)
    keys = [s["key"] for s in shown["series"]]
    assert keys.index("random|finetune|") < keys.index("random|zeroshot|")
    orders = [proto.labels.order("method", k.split("|")[0]) for k in keys]
    assert orders == sorted(orders)
    labels = {s["key"]: s["label"] for s in shown["series"]}
    assert labels["random|zeroshot|"].endswith("zero-shot")


def test_cell_links_are_relative_to_the_report_and_open_the_cell_folder(tree, data):
    out = default_out_dir(tree.root, "prune_sweep")
    cells = {c["cell_id"]: c for c in plot_data(data, out)["cells"]}
    for _, cell in data.cells.iterrows():
        link = cells[cell["cell_id"]]["link"]
        if isinstance(cell["cell_dir"], str):
            assert not Path(link).is_absolute()
            assert (out / link).resolve() == Path(cell["cell_dir"]).resolve()
        else:  # planned, never prepared: nothing to open
            assert link == "" and cell["state"] == "new"


def test_an_online_wandb_run_is_what_a_click_opens(tree):
    grid = tree.root / "prune_sweep"
    cell_dir = next(p for p in sorted(grid.iterdir()) if (p / "result.json").is_file())
    url = "https://wandb.ai/me/proj/runs/abc123"
    record = {"mode": "online", "id": "abc123", "project": "proj", "url": url}
    (cell_dir / WANDB_RECORD).write_text(json.dumps(record))
    try:
        data = GridData.load(tree.root, "prune_sweep")
        page = render_html(data, LoadReport(Path(".")), grid / "_analysis", {}, {})
    finally:
        (cell_dir / WANDB_RECORD).unlink()
    cell = next(c for c in payload(page)["cells"] if c["cell_id"] == cell_dir.name)
    assert cell["link"] == url and "W&B run" in cell["link_label"]
    assert f"<a href='{url}'>run</a>" in page  # the cells table's W&B column
    others = [c for c in payload(page)["cells"] if c["cell_id"] != cell_dir.name and c["link"]]
    assert others and not any(c["link"].startswith("http") for c in others)


def test_page_is_self_contained_and_its_data_block_survives_hostile_names(data, tmp_path):
    cells = data.cells.copy()
    evil = "x</script><script>alert(1)</script><!--"
    cells.loc[cells.index[0], "name"] = evil
    hostile = GridData.from_cells(data.root, data.grid, cells)
    page = render_html(hostile, LoadReport(Path(".")), tmp_path, {}, {})
    assert page.count("<script") == 2  # the data block and the report's own script, nothing else
    assert evil not in page
    assert payload(page)["cells"][0]["name"] == evil
    # nothing is loaded from elsewhere: no src but data:, no style sheets, no fetches
    assert not re.search(r"""src=["'](?!data:)""", page)
    assert not re.search(r"<link\b|@import|url\(|fetch\(|XMLHttpRequest", page)
    # the tables get filter menus on their category columns
    assert "<th class='cat'>Method</th>" in page and "<th class='cat'>Seed</th>" in page
