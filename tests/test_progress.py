"""The training progress display: a bar on a terminal, plain lines elsewhere, nothing when off."""

from __future__ import annotations

import io
import re

import pytest
import torch

from core.training.progress import TrainProgress, format_eta, resolve_mode
from core.training.trainer import TrainState


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _drive(progress: TrainProgress, start: int = 0, total: int = 4) -> None:
    state = TrainState(step=start, total_steps=total)
    progress.on_train_begin(state, torch.nn.Linear(1, 1))
    for step in range(start + 1, total + 1):
        state.step = step
        progress.on_log({"train/loss": 1.0 / step, "train/task": "qa"}, step)
        progress.on_step_end(state)
    progress.on_train_end(state)


def test_piped_output_gets_one_plain_line_per_logged_step():
    out = io.StringIO()
    _drive(TrainProgress("jd-none", stream=out), start=1)
    lines = out.getvalue().splitlines()
    assert [re.search(r"step (\d+)/4", ln).group(1) for ln in lines[:-1]] == ["2", "3", "4"]
    assert all("qa loss" in ln and "step/s ETA" in ln for ln in lines[:-1])
    assert lines[-1].startswith("[jd-none] trained steps 2-4 in")
    assert "\r" not in out.getvalue()


def test_a_terminal_gets_a_bar_and_off_prints_nothing():
    term = _Terminal()
    _drive(TrainProgress("jd-none", stream=term))
    assert "\r" in term.getvalue() and "jd-none" in term.getvalue()  # redrawn in place
    quiet = io.StringIO()
    _drive(TrainProgress("jd-none", mode="off", stream=quiet))
    assert quiet.getvalue() == ""


def test_modes_and_eta_text():
    assert resolve_mode("auto", _Terminal()) == "bar"
    assert resolve_mode("auto", io.StringIO()) == "lines"
    with pytest.raises(ValueError, match="logging.progress='fancy'"):
        resolve_mode("fancy", io.StringIO())
    assert (format_eta(75), format_eta(3725), format_eta(float("inf"))) == ("1:15", "1:02:05", "?")
