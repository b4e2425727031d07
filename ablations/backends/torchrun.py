"""Multi-node cells: one torchrun per node, under submitit (backend=slurm) or slurm/multi_node.py.

A grid whose resources say `nodes > 1` runs each cell as a SLURM job of N nodes with one task per
node (`TorchrunCellJob`); each task starts, as a child process, the command `torchrun_argv` builds
(`python -m torch.distributed.run --nnodes=N --nproc-per-node=G --rdzv-backend=c10d
--rdzv-endpoint=<first node>:<port> --rdzv-id=<job id> -m core.cell <cell_dir>`), the command the
standalone sbatch script of slurm/multi_node.py runs too. torchrun exports RANK / WORLD_SIZE /
LOCAL_RANK / MASTER_* for core.cell, which trains (or resumes from its checkpoint) the cell.

Claims: node 0's task holds the cell's claim for the whole run (heartbeat, release) and records
what core.cell could not record itself: a torchrun that ended badly as `failed` (its exit code and
the tail of its output; a failure core.cell recorded is kept), a stop from outside as
`interrupted`. The other nodes' tasks claim nothing; they start torchrun once node 0 holds the
claim (or give up after two leases when it stepped aside).

Stopping the child: torchrun and its workers inherit submitit's requeue signal (SIGUSR2) as
ignored, so a signal SLURM sends to the whole step reaches only the task, which decides. On that
signal, SIGTERM or SIGINT the task sends SIGTERM to torchrun (which stops its workers), SIGKILLs
what is left of its process tree after `TERM_GRACE_S` (the task is a child subreaper, so workers
orphaned by a dead torchrun stay its descendants, and are killed when torchrun dies any other way
too), then hands the signal to the handler it replaced (submitit's: `checkpoint()` and requeue on
node 0) and ends as interrupted. A requeued job runs a fresh `TorchrunCellJob`; core.cell resumes.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

DEFAULT_PORT = 29500  # torchrun's own default for the c10d rendezvous
TERM_GRACE_S = 20.0  # SIGTERM → SIGKILL for the child tree (torchrun stops workers at once)
TAIL_LINES = 20  # of the child's output, in a failure's status.json reason
RUNNER = "core.cell"  # the module torchrun runs on every rank
CELL_FN = "core.cell:run_cell"  # the launcher's cell_fn that RUNNER stands for
_SHELL_VALUE = re.compile(r"[\w$:.@%+,/-]+")


def check_port(port: Any, field: str = "backend.rdzv_port") -> int:
    """The c10d rendezvous port as an int in 1024–65535 (a clear error otherwise)."""
    try:
        value = int(port)
    except (TypeError, ValueError):
        value = -1
    if isinstance(port, bool) or str(port).strip() != str(value) or not 1024 <= value <= 65535:
        raise ValueError(f"{field}={port!r}: outside 1024–65535. Fix: e.g. {DEFAULT_PORT}.")
    return value


def torchrun_argv(
    cell_dir: str | os.PathLike[str],
    nnodes: int | str,
    nproc_per_node: int | str,
    endpoint: str,
    rdzv_id: str,
    python: str = sys.executable,
) -> list[str]:
    """The command one node runs: torchrun with a c10d rendezvous at `endpoint`, `core.cell`
    on `cell_dir` (values may name shell variables, e.g. "$SLURM_NNODES", for `shell_line`)."""
    return [
        python,
        "-m",
        "torch.distributed.run",
        f"--nnodes={nnodes}",
        f"--nproc-per-node={nproc_per_node}",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint={endpoint}",
        f"--rdzv-id={rdzv_id}",
        "-m",
        RUNNER,
        str(cell_dir),
    ]


def shell_line(argv: Sequence[str]) -> str:
    """`argv` as one bash command line: every word quoted, except that the value of a `--flag=`
    word naming a shell variable is double-quoted, so bash expands it."""
    words = []
    for word in argv:
        flag, eq, value = word.partition("=")
        if word.startswith("--") and eq and "$" in value:
            if not _SHELL_VALUE.fullmatch(value):
                raise ValueError(f"{flag}={value!r}: not a plain shell value.")
            words.append(f'{flag}="{value}"')
        else:
            words.append(shlex.quote(word))
    return " ".join(words)


# ---- the launcher's checks ---------------------------------------------------------------------
def nodes_of(resources: Mapping[str, Any]) -> int:
    return int(resources.get("nodes") or 1)


def describe(resources: Mapping[str, Any]) -> str:
    """What the dry run says of a multi-node grid's cells."""
    nodes, gpus = nodes_of(resources), int(resources.get("gpus") or 0)
    return (
        f"multi-node: each cell runs as {nodes} nodes × {gpus} GPUs through torchrun (one SLURM "
        f"task per node, c10d rendezvous on the first node, world size {nodes * gpus})"
    )


def dry_run_note(resources: Mapping[str, Any], backend: str, cell_fn: str) -> str:
    """The dry run's lines on a multi-node grid ("" for one node): how its cells run, and what
    a real launch would refuse."""
    if nodes_of(resources) <= 1:
        return ""
    try:
        check_resources(resources, backend, cell_fn)
    except ValueError as exc:
        return f"{describe(resources)}\nwarning: {exc}"
    return describe(resources)


def check_resources(resources: Mapping[str, Any], backend: str, cell_fn: str = CELL_FN) -> None:
    """Refuse what a multi-node cell cannot be (nothing is checked for `nodes == 1`).

    Local backends are refused rather than run on one node: the global batch is train.batch_size
    × the world size, so one node would train a different experiment under the same cell id."""
    nodes = nodes_of(resources)
    if nodes <= 1:
        return
    gpus, tasks = int(resources.get("gpus") or 0), resources.get("tasks")
    if backend != "slurm":
        raise ValueError(
            f"grid.resources.nodes={nodes}: backend={backend} runs cells on this machine only, "
            "and one node would be a different experiment (the global batch is "
            "train.batch_size × the world size). Fix: backend=slurm with a cluster profile, or "
            "grid.resources.nodes=1."
        )
    if gpus < 1:
        raise ValueError(
            f"grid.resources.gpus={gpus}: a {nodes}-node cell runs torchrun with one process per "
            "GPU of each node. Fix: set grid.resources.gpus to the GPUs per node (≥ 1), or "
            "grid.resources.nodes=1."
        )
    if tasks is not None:
        raise ValueError(
            f"grid.resources.tasks={tasks}: a {nodes}-node cell runs one task per node (torchrun "
            "starts one process per GPU). Fix: drop grid.resources.tasks (null), or "
            "grid.resources.nodes=1."
        )
    if cell_fn != CELL_FN:
        raise ValueError(
            f"cell_fn={cell_fn!r}: a {nodes}-node cell runs `python -m {RUNNER}` under torchrun "
            f"on every node, not a cell function. Fix: cell_fn={CELL_FN}, or "
            "grid.resources.nodes=1."
        )


# ---- the child process -------------------------------------------------------------------------
class TorchrunFailed(RuntimeError):
    """torchrun ended with an error (the message: its exit code and the tail of its output)."""


class Stopped(BaseException):
    """A stop signal reached the node task while torchrun ran."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


def become_subreaper() -> bool:
    """Make this process the reaper of its orphaned descendants (Linux; False elsewhere)."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER


def descendants(root: int) -> list[int]:
    """The pids below `root` in the process tree (from /proc; [] where there is none)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = entry.read_text()
        except OSError:
            continue
        ppid = int(text.rpartition(")")[2].split()[1])
        parents.setdefault(ppid, []).append(int(entry.parent.name))
    found, todo = [], [root]
    while todo:
        kids = parents.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def kill_tree() -> None:
    """SIGKILL and reap every descendant of this process (what a dead torchrun left behind)."""
    for _ in range(5):  # grandchildren are re-parented to this reaper as their parents die
        pids = descendants(os.getpid())
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid in pids:
            with contextlib.suppress(ChildProcessError):  # not our child (yet): not ours to reap
                os.waitpid(pid, 0)
        time.sleep(0.05)


class Child:
    """torchrun as a child process: its output passed through to ours with the tail kept, and
    `ignored` (submitit's requeue signal) ignored by it and everything it starts."""

    def __init__(self, argv: Sequence[str], ignored: signal.Signals | None = None) -> None:
        become_subreaper()
        previous = signal.signal(ignored, signal.SIG_IGN) if ignored else None
        try:  # an ignored disposition survives fork and exec; a handler would not
            self.proc = subprocess.Popen(
                list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                errors="replace", bufsize=1,
            )  # fmt: skip
        finally:
            if ignored:
                signal.signal(ignored, previous)
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self._reader = threading.Thread(target=self._pump, daemon=True)
        self._reader.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            self.tail.append(line.rstrip("\n"))

    def wait(self) -> int:
        """torchrun's exit code (negative: killed by that signal), its leftovers killed."""
        while True:
            try:
                code = self.proc.wait(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                continue
        self.finish()
        return code

    def stop(self, grace_s: float = TERM_GRACE_S) -> None:
        """SIGTERM to torchrun (it stops its workers), SIGKILL after `grace_s`, leftovers killed."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.finish()

    def finish(self) -> None:
        kill_tree()
        self._reader.join(timeout=5)

    def reason(self, code: int, where: str) -> str:
        """The status.json reason of an exit with `code`."""
        how = f"code {code}"
        if code < 0:
            how = f"signal {signal.Signals(-code).name}"
        tail = " | ".join(line for line in self.tail if line.strip())
        return f"torchrun on {where} exited with {how}; its last output: {tail[-2000:] or '(none)'}"


class StopSignals:
    """While torchrun runs: `signals` raise `Stopped` (after that, they are ignored until the
    task has stopped the child); `chain` then hands one to the handler it replaced."""

    def __init__(self, signals: Sequence[signal.Signals]) -> None:
        self.previous = {s: signal.signal(s, self._raise) for s in dict.fromkeys(signals)}

    def _raise(self, signum: int, frame: Any) -> None:
        for s in self.previous:
            signal.signal(s, signal.SIG_IGN)
        raise Stopped(signum)

    def restore(self) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)

    def chain(self, signum: int) -> None:
        """Restore the handlers and call the one `signum` had (submitit's checkpoint/requeue, or
        Python's KeyboardInterrupt for SIGINT); it may raise (e.g. SystemExit after a requeue)."""
        self.restore()
        handler = self.previous.get(signal.Signals(signum))
        if callable(handler):
            handler(signum, None)


def run_child(argv: Sequence[str], requeue_signal: signal.Signals | None) -> tuple[int, Child]:
    """Run torchrun to its end: (exit code, child). A stop signal stops it and is passed on to
    its previous handler, then raises `Stopped` (or what that handler raised)."""
    stops = [signal.SIGTERM, signal.SIGINT, *([requeue_signal] if requeue_signal else [])]
    signals = StopSignals(stops)
    child = None
    try:
        child = Child(argv, requeue_signal)
        return child.wait(), child
    except Stopped as stop:
        _end(child)
        signals.chain(stop.signum)
        raise
    finally:
        _end(child)  # any other way out ends the tree too
        signals.restore()


def _end(child: Child | None) -> None:
    """Stop the child; without one (a stop while it started) kill whatever was started."""
    if child is not None:
        child.stop()
    else:
        kill_tree()
