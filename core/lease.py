"""Leases: exclusive locks on shared storage that a dead or frozen holder cannot keep for ever.

A lease is a directory `<path>/` holding one record per holder, `holder.<token>.json` (host, pid,
the process space its pid belongs to, role, job, lease length). The grid lock and every cell claim
of a results tree are leases (core.results names them).

Acquiring: the record is written into a private directory `.<name>.<token>.new`, which is then
renamed onto `<path>`. rename(2) is atomic and fails when `<path>` exists with content, so exactly
one contender wins; nothing relies on O_EXCL (unsafe on NFSv2 and old clients) or on fcntl/flock
locks (NFSv3 needs a working lockd and silently becomes host-local with `nolock`; Lustre needs
`-o flock`, `localflock` is node-local; and a kernel lock cannot be taken from a frozen holder).
A rename whose reply was lost (NFS retransmission) is recognised by finding our own record there.

Heartbeat: the holder touches its record (utime; on NFS the server's clock) every lease/4 from a
daemon thread. A holder is dead when
  1. its pid is gone and it lives in our process space (host, boot id, pid namespace): instant;
  2. its last heartbeat is older than lease + skew by our clock (clocks of hosts and file server
     within `skew_s` of each other); or
  3. (blocking acquires only) its heartbeat has not changed while we watched for a whole lease, by
     our monotonic clock: free of clock skew. Records are read through open(), so NFS close-to-open
     revalidates their attributes (no stale attribute cache); Lustre is coherent.

Taking over: under a break lock `.<name>.break` (itself a lease, held for milliseconds), the
breaker re-reads the records and renames `<path>` away only if they are exactly the ones it judged
dead (same tokens, same heartbeats); then it competes for the free lease like anyone else.

Loss: a holder's record is named by its token, so once its lease was taken over its next
heartbeat (or `ensure()` before a write) finds the record gone and the holder stops at once
(`exit_on_loss`: os._exit, nothing more written). Residual window, inherent to leases on plain
files (there is no storage-side fencing): a holder frozen for longer than its lease that resumes
exactly between the breaker's re-read and rename may complete one write before it notices.

Standard library and core.io only (analysis reads claims where torch is absent).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import shutil
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from core.io import fsync_dir

LEASE_S = 60.0  # a holder silent for this long may be taken over (blocking acquires)
SKEW_S = 60.0  # allowed clock difference between hosts and the file server
LOST_EXIT = 75  # exit status of a process that lost its lease (EX_TEMPFAIL: rerun to resume)
RECORD_PREFIX, RECORD_SUFFIX = "holder.", ".json"
_BUSY = (errno.EEXIST, errno.ENOTEMPTY, errno.EISDIR, errno.ENOTDIR)


class LeaseTimeout(TimeoutError):
    """A blocking acquire gave up while a live holder kept the lease."""


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists here and is not a zombie (dead, not yet reaped)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # no /proc (macOS) or just gone
        return True
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


@functools.lru_cache(maxsize=1)
def process_space() -> str:
    """Where a pid names a process: host name, boot id and pid namespace (Linux). Two records
    with the same value can check each other's pids; containers sharing a host name cannot."""
    parts = [socket.gethostname()]
    with contextlib.suppress(OSError):
        parts.append(Path("/proc/sys/kernel/random/boot_id").read_text().strip())
    with contextlib.suppress(OSError):
        parts.append(str(os.stat("/proc/self/ns/pid").st_ino))
    return ":".join(parts)


@dataclass(frozen=True)
class Holder:
    """One record of a lease, as read: who, and when it last beat (the record's mtime)."""

    token: str
    host: str
    space: str
    pid: int
    role: str
    job: str
    lease_s: float
    beat: float

    def dead(self, now: float | None = None, skew_s: float = SKEW_S) -> bool:
        """Rules 1 and 2 of the module docstring (no waiting)."""
        if self.space and self.space == process_space() and not pid_alive(self.pid):
            return True
        return (time.time() if now is None else now) - self.beat > self.lease_s + skew_s

    def describe(self, now: float | None = None) -> str:
        age = (time.time() if now is None else now) - self.beat
        job = f", job {self.job}" if self.job else ""
        return f"{self.role} pid {self.pid} on {self.host or '?'}{job} (heartbeat {age:.0f}s ago)"


def read_holders(path: str | os.PathLike[str]) -> list[Holder]:
    """The records of the lease at `path` ([] when there is none). A record being written reads
    as an unknown holder that beat just now (alive by age): never judged dead by mistake."""
    path = Path(path)
    try:
        names = os.listdir(path)
    except (FileNotFoundError, NotADirectoryError):
        return []
    holders = []
    for name in sorted(names):
        if not (name.startswith(RECORD_PREFIX) and name.endswith(RECORD_SUFFIX)):
            continue
        try:
            with open(path / name, "rb") as f:  # open(): NFS close-to-open revalidation
                beat = os.fstat(f.fileno()).st_mtime
                raw = f.read(8192)
        except FileNotFoundError:
            continue
        try:
            data = json.loads(raw)
        except ValueError:
            data = {}
        data = data if isinstance(data, dict) else {}
        holders.append(
            Holder(
                token=name[len(RECORD_PREFIX) : -len(RECORD_SUFFIX)],
                host=str(data.get("host") or ""),
                space=str(data.get("space") or ""),
                pid=int(data.get("pid") or 0),
                role=str(data.get("role") or "?"),
                job=str(data.get("job") or ""),
                lease_s=float(data.get("lease_s") or LEASE_S),
                beat=beat,
            )
        )
    return holders


def live_holders(path: str | os.PathLike[str], skew_s: float = SKEW_S) -> list[Holder]:
    return [h for h in read_holders(path) if not h.dead(skew_s=skew_s)]


def exit_on_loss(lease: Lease) -> None:
    """What a writer does when its lease was taken over: stop now, writing nothing more."""
    print(
        f"lost {lease.path}: another process took it over (this one was frozen or cut off from "
        f"the storage for longer than its {lease.lease_s:.0f}s lease); stopping now without "
        "writing anything more. A re-launch resumes the work.",
        file=sys.stderr,
        flush=True,
    )
    os._exit(LOST_EXIT)


def _write_record(fd: int, lease: Lease) -> None:
    with os.fdopen(fd, "wb") as f:
        f.write(lease.record())
        f.flush()
        os.fsync(f.fileno())


def _remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


class Lease:
    """One process's hold on the lease at `path` (see the module docstring).

    `on_lost(lease)` runs when a heartbeat or `ensure()` finds the lease taken over."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        role: str = "launcher",
        job: str = "",
        lease_s: float = LEASE_S,
        skew_s: float = SKEW_S,
        on_lost: Callable[[Lease], None] | None = None,
    ) -> None:
        if not lease_s > 0:
            raise ValueError(f"lease_s={lease_s!r}: must be positive. Fix: e.g. {LEASE_S:g}.")
        self.path = Path(path)
        self.role, self.job = role, job
        self.lease_s, self.skew_s = float(lease_s), float(skew_s)
        self.on_lost = on_lost
        self.token = uuid.uuid4().hex[:16]
        self.held = False
        self._mutex = threading.Lock()

    @property
    def record_name(self) -> str:
        return f"{RECORD_PREFIX}{self.token}{RECORD_SUFFIX}"

    def record(self) -> bytes:
        data = {
            "token": self.token,
            "host": socket.gethostname(),
            "space": process_space(),
            "pid": os.getpid(),
            "role": self.role,
            "job": self.job,
            "lease_s": self.lease_s,
            "created": time.time(),
        }
        return json.dumps(data).encode() + b"\n"

    # ---- acquiring --------------------------------------------------------------------------

    def try_acquire(self, adopt: str = "") -> bool:
        """One attempt, never waiting: take the lease when it is free or every holder is dead
        (rules 1-2), or join it when `adopt` names a current holder (a hand-over)."""
        with self._mutex:
            if self.held:
                return True
            holders = read_holders(self.path)
            if adopt and any(h.token == adopt for h in holders):
                return self._adopt(adopt)
            if any(not h.dead(skew_s=self.skew_s) for h in holders):
                return False
            if (holders or self.path.exists()) and not self._break(holders):
                return False
            return self._create()

    def acquire(
        self,
        timeout_s: float | None = None,
        poll_s: float = 0.2,
        waiting: Callable[[list[Holder]], None] | None = None,
    ) -> None:
        """Block until the lease is ours; a holder that stops beating for a whole lease while we
        watch is taken over (rule 3). `waiting(holders)` is called once if we have to wait."""
        first_seen: dict[tuple[str, float], float] = {}
        start, told = time.monotonic(), False
        while not self.try_acquire():
            holders = read_holders(self.path)
            now = time.monotonic()
            keys = {(h.token, h.beat) for h in holders}
            first_seen = {k: first_seen.get(k, now) for k in keys}
            frozen = bool(holders) and all(
                now - first_seen[(h.token, h.beat)] >= h.lease_s for h in holders
            )
            if frozen:
                with self._mutex:
                    if self._break(holders) and self._create():
                        return
            if waiting is not None and not told and holders:
                waiting(holders)
                told = True
            if timeout_s is not None and now - start > timeout_s:
                who = "; ".join(h.describe() for h in holders) or "nobody (being released)"
                raise LeaseTimeout(f"{self.path}: still held after {timeout_s:g}s by {who}")
            time.sleep(poll_s)

    def _create(self) -> bool:
        """Rename a private directory holding our record onto the lease path."""
        parent = self.path.parent
        parent.mkdir(parents=True, exist_ok=True)
        tmp = parent / f".{self.path.name}.{self.token}.new"
        tmp.mkdir()
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
            _write_record(os.open(tmp / self.record_name, flags, 0o666), self)
            os.rename(tmp, self.path)
        except OSError as exc:
            _remove_tree(tmp)
            if exc.errno not in _BUSY:
                raise
            if not (self.path / self.record_name).is_file():  # else: a retransmitted rename
                return False
        fsync_dir(parent)
        self.held = True
        return True

    def _adopt(self, token: str) -> bool:
        """Join the lease held by `token` (which handed it over) and drop that record; the
        directory is opened first so our record lands in the very lease that `token` holds."""
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        except OSError:
            return False
        try:
            old = f"{RECORD_PREFIX}{token}{RECORD_SUFFIX}"
            try:
                os.stat(old, dir_fd=fd)
            except FileNotFoundError:
                return False
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
            _write_record(os.open(self.record_name, flags, 0o666, dir_fd=fd), self)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(old, dir_fd=fd)
        finally:
            os.close(fd)
        self.held = (self.path / self.record_name).is_file()  # not broken meanwhile
        return self.held

    def _break(self, judged: list[Holder]) -> bool:
        """Move the lease aside if its records are still exactly `judged` (see the docstring)."""
        breaker = Lease(
            self.path.with_name(f".{self.path.name}.break"), "breaker", "", self.lease_s
        )
        if not breaker._create():
            stale = read_holders(breaker.path)
            if not stale or all(h.dead(skew_s=self.skew_s) for h in stale):
                _move_away(breaker.path, self.token)  # a breaker that died mid-break
            return False
        try:
            now = read_holders(self.path)
            same = sorted((h.token, h.beat) for h in now) == sorted(
                (h.token, h.beat) for h in judged
            )
            if not same:
                return False
            return _take_away(self.path, self.token, {h.token for h in judged})
        finally:
            breaker.release()

    # ---- holding ----------------------------------------------------------------------------

    def beat(self) -> bool:
        """Touch our record; False (and no longer held) when it is gone: taken over."""
        with self._mutex:
            if not self.held:
                return False
            try:
                os.utime(self.path / self.record_name)
            except OSError as exc:
                if exc.errno not in (errno.ENOENT, errno.ESTALE):
                    return True  # a storage hiccup is no proof of loss: the next beat retries
                self.held = False
                return False
            return True

    def ensure(self) -> None:
        """Beat now; call `on_lost` if the lease is gone (before a write that needs it)."""
        if not self.beat() and self.on_lost is not None:
            self.on_lost(self)

    def release(self) -> None:
        """Drop our record, and the directory when no other holder remains."""
        with self._mutex:
            if not self.held:
                return
            self.held = False
            try:
                others = [n for n in os.listdir(self.path) if n != self.record_name]
            except (FileNotFoundError, NotADirectoryError):
                return
            # the last holder takes the whole directory away in one rename: an empty lease
            # directory left even for a moment could be replaced by a contender's rename while
            # a second contender judges it empty and moves the new lease away
            if not others and _take_away(self.path, self.token, {self.token}):
                return
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path / self.record_name)


def _record_tokens(path: Path) -> set[str]:
    try:
        names = os.listdir(path)
    except (FileNotFoundError, NotADirectoryError):
        return set()
    return {
        n[len(RECORD_PREFIX) : -len(RECORD_SUFFIX)]
        for n in names
        if n.startswith(RECORD_PREFIX) and n.endswith(RECORD_SUFFIX)
    }


def _take_away(path: Path, token: str, expected: set[str]) -> bool:
    """Rename the lease at `path` aside and delete it if it held only records of `expected`;
    if a holder joined or replaced it meanwhile, put it back (or, when that fails because a new
    lease stands there already, delete it: its holder sees its record gone and stops)."""
    gone = path.with_name(f".{path.name}.stale.{token}.{uuid.uuid4().hex[:6]}")
    try:
        os.rename(path, gone)
    except FileNotFoundError:
        return True
    if _record_tokens(gone) <= expected:
        _remove_tree(gone)
        return True
    try:
        os.rename(gone, path)
    except OSError:
        _remove_tree(gone)
    return False


def _move_away(path: Path, token: str) -> None:
    """Rename `path` to a unique name (atomic) and delete it there."""
    gone = path.with_name(f".{path.name}.stale.{token}.{uuid.uuid4().hex[:6]}")
    try:
        os.rename(path, gone)
    except FileNotFoundError:
        return
    _remove_tree(gone)


class Heartbeat:
    """One daemon thread that beats every registered lease every lease/4 and calls the lease's
    `on_lost` when one was taken over."""

    def __init__(self) -> None:
        self._leases: dict[int, Lease] = {}
        self._mutex = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, lease: Lease) -> None:
        with self._mutex:
            self._leases[id(lease)] = lease
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="lease-heartbeat")
                self._thread.daemon = True
                self._thread.start()
        self._wake.set()

    def remove(self, lease: Lease) -> None:
        with self._mutex:
            self._leases.pop(id(lease), None)

    def _run(self) -> None:
        while True:
            with self._mutex:
                leases = list(self._leases.values())
            period = min((lease.lease_s for lease in leases), default=LEASE_S) / 4
            self._wake.wait(timeout=max(0.05, min(period, 15.0)))
            self._wake.clear()
            for lease in leases:
                with self._mutex:
                    if id(lease) not in self._leases:
                        continue
                if lease.beat():
                    continue
                self.remove(lease)
                if lease.on_lost is not None:
                    try:
                        lease.on_lost(lease)
                    except Exception as exc:  # never let one handler stop the heartbeat
                        print(f"lease heartbeat: {type(exc).__name__}: {exc}", file=sys.stderr)


HEARTBEAT = Heartbeat()
