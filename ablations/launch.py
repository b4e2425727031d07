"""Ablation launcher: `python ablations/launch.py grid=prune_sweep [key=value ...]`.

Examples
  python ablations/launch.py grid=smoke                         # run inline (no SLURM here)
  python ablations/launch.py grid=prune_sweep dry_run=true      # plan, states and cost only
  python ablations/launch.py grid=prune_sweep arch=mot grid.axes.ratio=[0.3,0.5] train.steps=50
  python ablations/launch.py grid=prune_sweep scale=paper backend=slurm backend.profile=mysite
  python ablations/launch.py grid=prune_sweep retry_failed=true | force=true
  python ablations/launch.py grid=prune_sweep action=status | action=collect
See slurm/README.md for every option. A bad input is one `error:` line and exit code 2
(ABLATIONS_TRACEBACK=1 shows the traceback).
"""

from __future__ import annotations

import sys
from pathlib import Path

# run as a script, sys.path[0] is ablations/ (whose modules must not shadow top-level names):
# put the repo root there instead so `ablations` and `core` import as packages.
REPO_ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(REPO_ROOT)
elif str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import hydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from ablations import app, cli_help, hydra_conf  # noqa: E402

hydra_conf.register_defaults()
cli_help.register_resolver()


@hydra.main(config_path="conf", config_name="launch", version_base="1.3")
def main(cfg: DictConfig) -> None:
    code = app.main(cfg, list(HydraConfig.get().overrides.task))
    if code:
        sys.exit(code)


if __name__ == "__main__":
    if problem := app.conf_problem(REPO_ROOT / "ablations" / "conf"):  # before hydra reads it
        print(f"error: {problem}")
        sys.exit(2)
    main()
