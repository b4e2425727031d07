"""`python ablations/launch.py --help`: the launcher's actions, grids, scales, backends, main keys
and examples, read from the conf folder (each option's leading comment) so it never drifts.

Hydra prints `hydra.help.template`; `conf/hydra/help/launch.yaml` sets it to `${launch_help:}`, the
resolver registered here.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

from ablations.hydra_conf import CONF_DIR, available

ACTIONS = {
    "launch": "plan, run or submit the grid's cells (the default); finished cells are skipped",
    "status": "one line per cell: state, step of steps, accuracy, the reason of a failure",
    "collect": "tables and figures from the results tree (also after every waited launch)",
}
MAIN_KEYS = {
    "grid=NAME": "which grid (required for launch)",
    "scale=tiny|small|paper": "model and data preset (tiny: CPU in minutes)",
    "backend=auto|inline|local|slurm": "where cells run (auto: SLURM when reachable, else inline)",
    "dry_run=true": "print the plan, the cells' states, FLOPs and an estimated wall time",
    "retry_failed=true": "run failed cells again (incomplete cells always resume)",
    "force=true": "move this plan's cell dirs to _trash/ and run them again",
    "results_root=DIR": "where results/<grid>/<cell_id>/ live (default: results)",
    "arch=NAME": "pin the arch axis to one arch (any axis: pruning.method=scorer, ...)",
    "SECTION.KEY=VALUE": "set any experiment key (train.steps=50, pruning.scorer.aux_coef=0)",
    "grid.axes.AXIS=[...]": "replace an axis' values (grid.axes.ratio=[0.3,0.5])",
    "logging.progress=auto|bar|lines|off": "training progress display (bar on a terminal)",
    "logging.wandb=auto|online|offline|disabled": "W&B (auto: online when WANDB_API_KEY is set)",
}
EXAMPLES = (
    "python ablations/launch.py grid=prune_sweep                 # the default sweep, on this machine",
    "python ablations/launch.py grid=smoke                       # three cells in about two minutes",
    "python ablations/launch.py grid=prune_sweep dry_run=true    # plan, states, cost, wall time",
    "python ablations/launch.py grid=prune_sweep arch=mot grid.axes.ratio=[0.3,0.5] train.steps=50",
    "python ablations/launch.py grid=prune_sweep backend=slurm backend.profile=mysite wait=true",
    "python ablations/launch.py grid=prune_sweep action=status",
    "python -m analysis --results results --grid prune_sweep     # tables, figures, report",
)


def summary(path: Path, width: int = 140) -> str:
    """The first sentence of a YAML file's leading comment (its `# @package` line skipped)."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        text = line.lstrip("#").strip()
        if not text.startswith("@package"):
            lines.append(text)
    text = " ".join(lines)
    sentence = re.split(r"(?<=\.)\s", text, maxsplit=1)[0].rstrip(".")
    return textwrap.shorten(sentence, width, placeholder=" …")


def _rows(rows: dict[str, str], indent: int = 2, width: int = 100) -> str:
    """Two columns; long descriptions wrap under their own column."""
    pad = max(len(k) for k in rows) + 2
    out = []
    for key, text in rows.items():
        lines = textwrap.wrap(text, max(width - indent - pad, 30)) or [""]
        out.append(" " * indent + key.ljust(pad) + lines[0])
        out += [" " * (indent + pad) + line for line in lines[1:]]
    return "\n".join(out)


def help_text() -> str:
    groups = {
        group: {name: summary(CONF_DIR / group / f"{name}.yaml") for name in available(group)}
        for group in ("grid", "scale", "backend", "arch")
    }
    parts = [
        "Ablation launcher: sweeps arch x prune method x ratio x layer x seed as cells, runs them "
        "inline,\nas local processes or as SLURM jobs, and writes results/<grid>/<cell_id>/ "
        "(result.json, metrics,\ncheckpoints) plus tables and figures.",
        "Usage: python ablations/launch.py grid=NAME [action=launch|status|collect] [key=value ...]",
        "Actions (action=...):\n" + _rows(ACTIONS),
        *(
            f"{group.capitalize()}s ({group}=...):\n" + _rows(rows)
            for group, rows in groups.items()
        ),
        "Main keys:\n" + _rows(MAIN_KEYS),
        "Examples:\n" + "\n".join(f"  {e}" for e in EXAMPLES),
        "Every experiment key and its default: python ablations/launch.py --cfg job\n"
        "Grids, profiles and SLURM options: slurm/README.md; the results format: "
        "docs/results_format.md.",
    ]
    return "\n\n".join(parts) + "\n"


def register_resolver() -> None:
    """`${launch_help:}` for Hydra's help template (idempotent)."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("launch_help"):
        OmegaConf.register_new_resolver("launch_help", help_text)
