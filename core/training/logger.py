"""Run loggers: metrics.jsonl is the source of truth, W&B an optional mirror.

`make_logger` is the one entry point the cell runner uses. Rank 0 always writes JSONL and, unless
W&B is disabled, mirrors to W&B; other ranks get a no-op logger. A W&B failure (missing package,
no API key online, network trouble) never stops a cell: it warns and continues JSONL-only. The API
key is read by wandb from the environment and never written to any file we write.
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path
from typing import Any

from core.config.train import LoggingConfig
from core.io import (
    append_jsonl,
    atomic_write,
    dumps_json,
    read_json,
    read_jsonl,
    write_json_atomic,
)
from core.results import METRICS_FILE, WANDB_RECORD

PHASES = ("train", "eval")
SUMMARY_FILE = "summary.json"
KEY_SEP = "/"  # replaces "." in config keys sent to W&B (its filters mishandle dotted keys)
_LEGACY_MODES = {"dryrun": "offline", "run": "online"}


class RunLogger:
    """Interface: `log` a metrics dict at a step of a phase, an `image`, set final `summary`
    values, `finish`. The base class is the no-op logger given to non-zero ranks."""

    def log(self, metrics: dict[str, Any], step: int, phase: str = "train") -> None:
        _check_phase(phase)

    def image(self, key: str, image: Any, step: int, caption: str = "") -> None:
        """An image (uint8 HxWx3 array or a PNG path) for the run's dashboard; files on disk keep
        their own copy, so only the W&B mirror does anything."""

    def summary(self, d: dict[str, Any]) -> None:
        return None

    def finish(self, exit_code: int = 0) -> None:
        return None


def _check_phase(phase: str) -> None:
    if phase not in PHASES:
        raise ValueError(f"phase={phase!r}: unknown logging phase. Fix: use one of {PHASES}.")


class JsonlLogger(RunLogger):
    """Appends {"step", "phase", "time" (unix seconds), **metrics} to metrics.jsonl; the summary
    goes to summary.json next to it (merged across calls, written atomically)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.summary_path = self.path.with_name(SUMMARY_FILE)

    def log(self, metrics: dict[str, Any], step: int, phase: str = "train") -> None:
        _check_phase(phase)
        reserved = {"step", "phase", "time"} & set(metrics)
        if reserved:
            raise ValueError(f"metric keys {sorted(reserved)} are reserved; rename them")
        append_jsonl(self.path, {"step": int(step), "phase": phase, "time": time.time(), **metrics})

    def summary(self, d: dict[str, Any]) -> None:
        current = read_json(self.summary_path) if self.summary_path.is_file() else {}
        current.update(d)
        write_json_atomic(self.summary_path, current)


def drop_train_rows_after(path: str | os.PathLike[str], step: int) -> int:
    """Remove the train rows past `step` from a metrics file (the steps a resumed run re-does, so
    each step is logged once); returns how many were dropped. The file is rewritten atomically."""
    path = Path(path)
    rows = read_jsonl(path)
    kept = [r for r in rows if not (r.get("phase") == "train" and int(r.get("step", 0)) > step)]
    if len(kept) < len(rows):
        atomic_write(path, lambda f: f.writelines(dumps_json(r) + "\n" for r in kept))
    return len(rows) - len(kept)


class WandbLogger(RunLogger):
    """Mirror to an already-initialised W&B run. Logging errors warn once and disable the mirror."""

    def __init__(self, run: Any) -> None:
        self.run = run
        self._broken = False
        run.define_metric("step")
        run.define_metric("*", step_metric="step")

    def _guard(self, what: str, fn: Any) -> None:
        if self._broken:
            return
        try:
            fn()
        except Exception as exc:  # W&B must never take a cell down
            self._broken = True
            warnings.warn(f"W&B {what} failed ({exc!r}); continuing with JSONL only", stacklevel=3)

    def log(self, metrics: dict[str, Any], step: int, phase: str = "train") -> None:
        _check_phase(phase)
        # An explicit "step" metric (not wandb's own step counter) tolerates the repeated steps of a
        # requeued run that resumes from its last checkpoint.
        self._guard("log", lambda: self.run.log({**metrics, "step": int(step)}))

    def image(self, key: str, image: Any, step: int, caption: str = "") -> None:
        def send() -> None:
            import wandb

            picture = wandb.Image(str(image) if isinstance(image, Path) else image, caption=caption)
            self.run.log({key: picture, "step": int(step)})

        self._guard("image", send)

    def summary(self, d: dict[str, Any]) -> None:
        self._guard("summary", lambda: self.run.summary.update(dict(d)))

    def finish(self, exit_code: int = 0) -> None:
        self._guard("finish", lambda: self.run.finish(exit_code=exit_code))


class CompositeLogger(RunLogger):
    def __init__(self, loggers: list[RunLogger]) -> None:
        self.loggers = list(loggers)

    def log(self, metrics: dict[str, Any], step: int, phase: str = "train") -> None:
        for lg in self.loggers:
            lg.log(metrics, step, phase)

    def image(self, key: str, image: Any, step: int, caption: str = "") -> None:
        for lg in self.loggers:
            lg.image(key, image, step, caption)

    def summary(self, d: dict[str, Any]) -> None:
        for lg in self.loggers:
            lg.summary(d)

    def finish(self, exit_code: int = 0) -> None:
        for lg in self.loggers:
            lg.finish(exit_code)


def resolve_wandb_mode(cfg: LoggingConfig, env: dict[str, str] | None = None) -> str:
    """WANDB_MODE in the environment wins; else `auto` → online with WANDB_API_KEY, else offline."""
    env = os.environ if env is None else env
    forced = env.get("WANDB_MODE", "").strip().lower()
    if forced:
        forced = _LEGACY_MODES.get(forced, forced)
        if forced not in ("online", "offline", "disabled"):
            raise ValueError(
                f"WANDB_MODE={forced!r}: unsupported W&B mode. Fix: use online, offline or disabled."
            )
        return forced
    if cfg.wandb == "auto":
        return "online" if env.get("WANDB_API_KEY") else "offline"
    return cfg.wandb


def wandb_config(flat_config: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """Dot-free keys ("pruning.ratio" → "pruning/ratio") plus extras such as cell_id; any value
    equal to the API key is redacted so a misplaced secret never reaches W&B."""
    secret = os.environ.get("WANDB_API_KEY")
    out = {}
    for key, value in {**flat_config, **extra}.items():
        if secret and isinstance(value, str) and secret in value:
            value = "<redacted>"
        out[key.replace(".", KEY_SEP)] = value
    return out


def _init_wandb(
    cfg: LoggingConfig,
    mode: str,
    cell_dir: Path,
    run_name: str,
    cell_id: str,
    flat_config: dict[str, Any],
    attempt: int,
    group: str,
) -> RunLogger | None:
    run_id = cell_id if mode == "online" else f"{cell_id}-a{attempt}"
    record = {
        "mode": mode,
        "id": run_id,
        "project": cfg.project,
        "group": group,
        "name": run_name,
        "dir": str(cell_dir / "wandb"),
    }
    try:
        import wandb

        (cell_dir / "wandb").mkdir(parents=True, exist_ok=True)
        kwargs: dict[str, Any] = {}
        if mode == "online":
            kwargs["resume"] = "allow"  # a requeued cell continues its online run
        run = wandb.init(
            project=cfg.project,
            entity=cfg.entity or None,
            group=group,
            job_type=cfg.job_type,
            tags=list(cfg.tags),
            name=run_name,
            config=wandb_config(flat_config, cell_id=cell_id, attempt=attempt),
            dir=str(cell_dir),
            id=run_id,
            mode=mode,
            reinit="finish_previous",
            # W&B's own banner, summary and console capture stay off: one line per cell instead
            settings=wandb.Settings(silent=True, console="off"),
            **kwargs,
        )
    except Exception as exc:
        warnings.warn(
            f"W&B init ({mode}) failed for cell {cell_id}: {exc!r}. Continuing with "
            f"{METRICS_FILE} only; set logging.wandb=offline (or WANDB_MODE=offline) to keep a "
            "local W&B copy, or disabled to silence this.",
            stacklevel=3,
        )
        return None
    record["run_dir"] = str(getattr(getattr(run, "settings", None), "sync_dir", "") or "")
    record["url"] = str(getattr(run, "url", "") or "") if mode == "online" else ""
    write_json_atomic(cell_dir / WANDB_RECORD, record)
    print(f"[{run_name}] {wandb_line(mode, run, record['run_dir'])}", flush=True)
    return WandbLogger(run)


def wandb_line(mode: str, run: Any, run_dir: str) -> str:
    """The one line a cell prints about its W&B run: where it is, and how to upload it."""
    if mode == "online":
        return f"W&B run {getattr(run, 'url', '') or getattr(run, 'id', '')}"
    return f"W&B offline run {run_dir} (upload: wandb sync {run_dir})"


def make_logger(
    cfg: LoggingConfig,
    cell_dir: str | os.PathLike[str],
    run_name: str,
    cell_id: str,
    flat_config: dict[str, Any],
    attempt: int = 1,
    rank: int = 0,
    group: str | None = None,
) -> RunLogger:
    """JSONL (+ W&B mirror unless disabled) on rank 0, a no-op logger elsewhere.

    The W&B group is `cfg.group`, else `group` (the grid name), else the name of the cell dir's
    parent (the grid folder of results/<grid>/<cell_id>)."""
    if rank != 0:
        return RunLogger()
    cell_path = Path(cell_dir)
    cell_path.mkdir(parents=True, exist_ok=True)
    loggers: list[RunLogger] = [JsonlLogger(cell_path / METRICS_FILE)]
    mode = resolve_wandb_mode(cfg)
    if mode != "disabled":
        group = cfg.group or group or cell_path.resolve().parent.name
        wb = _init_wandb(cfg, mode, cell_path, run_name, cell_id, flat_config, attempt, group)
        if wb is not None:
            loggers.append(wb)
    return CompositeLogger(loggers)
