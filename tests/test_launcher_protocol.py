"""The field's protocol in a grid: one unpruned base per arch × seed, every cell fine-tuned from its
base (the unpruned control included), training-free methods also zero-shot on the base; bases run
first, a dependent of a failed base waits, and the base's identity is part of its dependents'."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ablations import app, hydra_conf
from ablations.overrides import read_command_line
from core.results import read_result, read_status

CELL_FN = "cell_fn=tests.launcher_cells:count_cell"
PROTOCOL = (
    "+grid.protocol.base.train.steps=3",
    "+grid.protocol.finetune.train.steps=2",
    "+grid.protocol.finetune.train.caption_steps=0",
    "grid.axes.seed=[0,1]",
)
BASE = "jd-none-r0-l0-s{}-base"


def compose(*overrides: str) -> dict[str, object]:
    args = ["grid=smoke", *PROTOCOL, *overrides]
    cfg = hydra_conf.compose_launch(args)
    cli = read_command_line(cfg, args)
    return {c.name: c for c in app.compose_cells(cfg, app.grid_spec(cfg, cli), cli)}


def launch(root: Path, *overrides: str) -> int:
    args = ["grid=smoke", *PROTOCOL, f"results_root={root}", CELL_FN, "collect=false", *overrides]
    return app.main(hydra_conf.compose_launch(args), args)


def by_name(root: Path) -> dict[str, Path]:
    plan = json.loads((root / "smoke" / "plan.json").read_text())
    return {c["name"]: root / "smoke" / c["cell_id"] for c in plan["cells"]}


@pytest.fixture(autouse=True)
def _no_injection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LAUNCHER_TEST_FAIL", raising=False)
    monkeypatch.delenv("LAUNCHER_TEST_STEP_S", raising=False)


def test_bases_fine_tunes_and_zero_shots_are_composed_per_arch_and_seed():
    cells = compose()
    for seed in (0, 1):
        base = cells[BASE.format(seed)]
        assert base.protocol == "base" and not base.base_id
        assert (base.config.pruning.method, base.config.train.steps) == ("none", 3)
        fine_tuned = [
            c for c in cells.values() if c.protocol == "finetune" and c.axes["seed"] == seed
        ]
        assert sorted(c.axes["method"] for c in fine_tuned) == ["none", "random", "scorer"]
        zero_shot = [
            c for c in cells.values() if c.protocol == "zeroshot" and c.axes["seed"] == seed
        ]
        assert [c.axes["method"] for c in zero_shot] == ["random"]  # training-free, not reference
        for cell in fine_tuned + zero_shot:
            assert cell.base_id == base.cell_id == cell.config.train.init_cell
            assert cell.config.train.caption_steps == 0
        assert [c.config.train.steps for c in fine_tuned] == [2, 2, 2]
        assert zero_shot[0].config.train.steps == 0
    assert len(cells) == 2 * (1 + 3 + 1)


def test_a_changed_base_changes_exactly_its_dependents_ids():
    before = {n: c.cell_id for n, c in compose().items()}
    longer_base = {n: c.cell_id for n, c in compose("grid.protocol.base.train.steps=4").items()}
    assert all(before[n] != longer_base[n] for n in before)  # every base changed: all dependents
    tuned = {n: c.cell_id for n, c in compose("grid.protocol.finetune.train.steps=5").items()}
    assert {n for n in before if before[n] != tuned[n]} == {
        n for n in before if not n.endswith("-base") and not n.endswith("-zs")
    }  # bases and zero-shot cells are untouched by the fine-tune budget


def test_bases_run_first_and_dependents_of_a_failed_base_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    monkeypatch.setenv("LAUNCHER_TEST_FAIL", BASE.format(1))
    assert launch(tmp_path, "backend=inline") == 1
    cells = by_name(tmp_path)
    for name, cell_dir in cells.items():
        done = read_result(cell_dir)
        if name.endswith("-s0-base") or "-s0-" not in name:
            continue
        assert done is not None, name  # seed 0: its base finished first, then every dependent
        if not name.endswith("-base"):
            assert done["base_value"] == read_result(cells[BASE.format(0)])["value"]
    assert read_status(cells[BASE.format(1)])["state"] == "failed"
    seed1 = [d for n, d in cells.items() if "-s1-" in n and not n.endswith("-base")]
    assert all(read_result(d) is None for d in seed1)
    assert all(read_status(d)["state"] != "failed" for d in seed1)  # waiting, not failed
    out = capsys.readouterr().out
    assert f"waits: base {cells[BASE.format(1)].name} not done" in out

    # The plan names why they wait; with the base retried, they run after it.
    monkeypatch.delenv("LAUNCHER_TEST_FAIL")
    assert launch(tmp_path, "dry_run=true") == 0
    assert (
        f"blocked: its base {BASE.format(1)} is failed (retry_failed=true"
        in capsys.readouterr().out
    )
    assert launch(tmp_path, "backend=inline", "retry_failed=true") == 0
    assert all(read_result(d) is not None for d in by_name(tmp_path).values())


def test_dry_run_shows_the_stages_and_each_cells_base(tmp_path: Path, capsys):
    assert launch(tmp_path, "dry_run=true") == 0
    out = capsys.readouterr().out
    assert (
        " stage base: 2 cells" in out and " stage dependent: 8 cells (each after its base)" in out
    )
    assert "jd-scorer-r0.5-l1-s1-ft" in out and f"after {BASE.format(1)}" in out


def test_local_backend_runs_the_stages_in_order(tmp_path: Path):
    assert launch(tmp_path, "backend=local", "backend.max_parallel=2", "backend.poll_s=0.2") == 0
    cells = by_name(tmp_path)
    for name, cell_dir in cells.items():
        result = read_result(cell_dir)
        assert result is not None, name
        if not name.endswith("-base"):
            seed = name.split("-s")[-1][0]
            assert result["base_value"] == read_result(cells[BASE.format(seed)])["value"]


VARIANTS = (
    "+grid.variants.reference_aux.match.method=scorer",
    "+grid.variants.reference_aux.set.pruning.scorer.aux_loss=mse_sigmoid",
    "+grid.variants.scratch.match.method=scorer",
    "+grid.variants.scratch.protocol=scratch",
)


def test_variants_copy_the_cells_they_match_with_their_keys_or_from_scratch():
    cells = compose(*VARIANTS)
    ft = cells["jd-scorer-r0.5-l1-s0-ft"]
    ref = cells["jd-scorer-r0.5-l1-s0-ft-reference_aux"]
    assert ref.axes["variant"] == "reference_aux" and ref.base_id == ft.base_id
    assert (ft.config.pruning.options.aux_loss, ref.config.pruning.options.aux_loss) == (
        "bce_logits",
        "mse_sigmoid",
    )
    scratch = cells["jd-scorer-r0.5-l1-s0-scratch"]
    assert scratch.protocol == "scratch" and not scratch.base_id  # no base: random init
    assert scratch.config.train.steps == 3  # the base's budget
    assert not any(n.endswith(("-reference_aux", "-scratch")) for n in cells if "random" in n)
    assert len(cells) == 2 * (1 + 3 + 1 + 2)


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (["+grid.variants.Bad-Name.set.train.lr=0.1"], "a variant name is lower-case"),
        (["+grid.variants.v1.match.method=scorer"], "changes nothing"),
        (["+grid.variants.v1.set.train.lr=0.1"], r"v1.match: needs at least one axis"),
        (
            ["+grid.variants.v1.match.method=scorer", "+grid.variants.v1.protocol=finetune"],
            "can only train from scratch",
        ),
        (
            ["+grid.variants.v1.match.method=scorer", "+grid.variants.v1.set.trian.lr=0.1"],
            "not an experiment key",
        ),
    ],
)
def test_bad_variants_are_refused_naming_the_fix(overrides, needle):
    with pytest.raises(ValueError, match=needle):
        compose(*overrides)


def test_a_scratch_variant_is_compared_with_the_base(tmp_path: Path):
    from analysis.aggregate import aggregate
    from analysis.load import load_results

    assert launch(tmp_path, "backend=inline", *VARIANTS) == 0
    agg = aggregate(load_results(tmp_path, "smoke")[0])
    row = agg[(agg["method"] == "scorer") & (agg["variant"] == "scratch")].iloc[0]
    base = agg[(agg["protocol"] == "base")].iloc[0]
    assert row["protocol"] == "scratch" and row["n"] == 2
    assert row["delta_accuracy_mean"] == pytest.approx(row["accuracy_mean"] - base["accuracy_mean"])
