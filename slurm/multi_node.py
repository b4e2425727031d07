"""One cell on several SLURM nodes through torchrun: render the sbatch script (print it or submit it).

The launcher runs a grid whose `resources.nodes > 1` this way itself (backend=slurm, through
submitit: ablations.backends.torchrun). This script does the same for one cell dir by hand: one
task per node, each running `python -m torch.distributed.run` (torchrun) with `--nproc-per-node` =
GPUs per node and a c10d rendezvous hosted on the job's first node, the command `torchrun_argv`
builds for the launcher too; torchrun exports RANK / WORLD_SIZE / LOCAL_RANK / MASTER_* for
`core.cell`, which trains (or resumes from its checkpoint after a requeue) the frozen cell
directory. Limits, partition, account and setup lines come from a cluster profile
(`slurm/profiles/<name>.yaml`, as for the launcher).

    python slurm/multi_node.py results/prune_sweep/<cell_id> --nodes 2 --profile <site>  # print
    python slurm/multi_node.py results/prune_sweep/<cell_id> --nodes 2 --profile <site> | sbatch
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ablations.backends.torchrun import (  # noqa: E402
    DEFAULT_PORT,
    check_port,
    shell_line,
    torchrun_argv,
)
from ablations.profiles import ProfileError, load_profile  # noqa: E402
from core.results import CONFIG_FILE  # noqa: E402


def render_sbatch(
    cell_dir: Path,
    profile: Mapping[str, Any],
    nodes: int,
    gpus_per_node: int | None = None,
    port: int = DEFAULT_PORT,
    timeout_min: int | None = None,
    python: str = "python",
) -> str:
    """The sbatch script running `core.cell cell_dir` on `nodes` nodes × `gpus_per_node` GPUs
    (default: the profile's), one torchrun per node, rendezvous on the first node at `port`."""
    cell_dir = Path(cell_dir).resolve()
    if nodes < 2:
        raise ValueError(
            f"nodes={nodes}: this script is the multi-node path. Fix: use --nodes 2 or more, or "
            "run one node through the launcher (backend=slurm)."
        )
    if not (cell_dir / CONFIG_FILE).is_file():
        raise FileNotFoundError(
            f"cell_dir={cell_dir}: no {CONFIG_FILE}. Fix: give a cell directory a launch wrote "
            "(results/<grid>/<cell_id>/ with its frozen config.yaml)."
        )
    if any(c.isspace() or ord(c) < 32 for c in str(cell_dir)):  # #SBATCH lines are not quoted
        raise ValueError(
            f"cell_dir={str(cell_dir)!r}: whitespace or control characters in the path. Fix: "
            "use a results_root without them."
        )
    cap = profile.get("gpus_per_node")
    gpus = int(gpus_per_node if gpus_per_node is not None else cap or 0)
    if gpus < 1 or (cap is not None and gpus > int(cap)):
        raise ValueError(
            f"gpus_per_node={gpus}: need 1 to the profile's gpus_per_node={cap}. Fix: pass "
            "--gpus-per-node within it, or use a profile for bigger nodes."
        )
    port = check_port(port, "port")
    limit = profile.get("timeout_min")
    minutes = timeout_min or limit or 60  # the launcher's default
    if limit:
        minutes = min(minutes, int(limit))
    sbatch = {
        "job-name": f"vidprune-{cell_dir.name}",
        "nodes": nodes,
        "ntasks-per-node": 1,
        "gpus-per-node": gpus,
        "cpus-per-task": int(profile.get("cpus_per_gpu") or 1) * gpus,
        "mem": f"{int(float(profile.get('mem_gb_per_gpu') or 4) * gpus)}G",
        "time": int(minutes),
        "partition": profile["partition"],
        "output": f"{cell_dir}/slurm-%j.out",
    }
    for key in ("account", "qos", "constraint", "exclude"):
        if profile.get(key):
            sbatch[key] = profile[key]
    sbatch.update({"requeue": True, **(profile.get("additional_parameters") or {})})
    lines = ["#!/bin/bash"]
    for key, value in sbatch.items():  # submitit's spelling: underscores, True for a bare flag
        flag = f"#SBATCH --{key.replace('_', '-')}"
        if value is not False and value is not None:
            lines.append(flag if value is True else f"{flag}={value}")
    lines += [
        "set -euo pipefail",
        f"cd {shlex.quote(str(REPO))}",
        *(profile.get("setup") or []),
        # the whole list read, never `| head -n 1`: under pipefail its SIGPIPE would end the job
        'mapfile -t hosts < <(scontrol show hostnames "$SLURM_JOB_NODELIST")',
        'head_node="${hosts[0]}"',
        f'export PYTHONPATH={shlex.quote(str(REPO))}"${{PYTHONPATH:+:$PYTHONPATH}}"',
        "srun --ntasks-per-node=1 --kill-on-bad-exit=1 "
        + shell_line(
            torchrun_argv(
                cell_dir, "$SLURM_NNODES", gpus, f"$head_node:{port}", "$SLURM_JOB_ID", python
            )
        ),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cell_dir", type=Path)
    parser.add_argument("--nodes", type=int, required=True)
    parser.add_argument("--gpus-per-node", type=int, help="default: the profile's gpus_per_node")
    parser.add_argument("--profile", default="", help="slurm/profiles/<name>.yaml")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="c10d rendezvous port")
    parser.add_argument("--timeout-min", type=int, help="capped by the profile's timeout_min")
    parser.add_argument("--python", default="python", help="interpreter on the compute nodes")
    args = parser.parse_args(argv)
    try:
        profile = load_profile(args.profile)
        script = render_sbatch(
            args.cell_dir, profile, args.nodes, args.gpus_per_node, args.port, args.timeout_min,
            args.python,
        )  # fmt: skip
    except (ProfileError, ValueError, FileNotFoundError) as exc:
        parser.error(str(exc))
    sys.stdout.write(script)
    return 0


if __name__ == "__main__":
    sys.exit(main())
