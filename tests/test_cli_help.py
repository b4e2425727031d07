"""`launch.py --help` is the project's own help: actions, every grid/scale/backend/arch with its
summary, the main keys and examples, not Hydra's config dump."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ablations import cli_help, hydra_conf

REPO = Path(__file__).resolve().parent.parent


def test_help_lists_actions_options_keys_and_examples() -> None:
    out = subprocess.run(
        [sys.executable, str(REPO / "ablations" / "launch.py"), "--help"],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    ).stdout
    for action in cli_help.ACTIONS:
        assert f"  {action}  " in out
    for group in ("grid", "scale", "backend", "arch"):
        for name in hydra_conf.available(group):
            line = next(ln for ln in out.splitlines() if ln.startswith(f"  {name} "))
            assert len(line.split()) > 2, f"{group} {name} has no summary"
    assert "grid=prune_sweep dry_run=true" in out and "action=status" in out
    assert "data_root:" not in out and "Config ==" not in out  # Hydra's 150-line dump is gone
    assert len(out.splitlines()) < 90


def test_summary_is_the_first_sentence_of_the_leading_comment(tmp_path: Path) -> None:
    path = tmp_path / "g.yaml"
    path.write_text(
        "# @package _global_\n# A grid: two methods.\n# More detail here.\nname: g\n# later\n"
    )
    assert cli_help.summary(path) == "A grid: two methods"
    path.write_text("name: g\n# not leading\n")
    assert cli_help.summary(path) == ""
