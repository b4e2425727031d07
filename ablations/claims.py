"""The cell claims one launcher holds (core.lease leases at core.results.claim_path).

A launcher claims the cells it is about to prepare while it holds the grid lock, so no two
launchers ever prepare or queue the same cell. It keeps the claims alive (one heartbeat thread)
while the cells wait in it, and every write it makes into a cell folder happens under the claim.
A cell run in this process (inline) keeps the launcher's claim; a cell handed to a worker (local
backend) is adopted by that worker, which then holds it for as long as it runs; cells handed to
a scheduler (SLURM) are released once their job ids are recorded, and each job claims its cell
when it starts. Whatever happens, `close()` releases what is left.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from core.lease import HEARTBEAT, LEASE_S, Lease, exit_on_loss
from core.results import claim_holders, claim_path


def held_by(cell_dir: Path) -> str:
    """Who holds a cell's claim, for messages."""
    return "; ".join(h.describe() for h in claim_holders(cell_dir)) or "another process"


class Claims:
    """Claims of cells (keyed by folder) held by this process (the heartbeat thread drops lost
    ones, hence the mutex)."""

    def __init__(self, lease_s: float = LEASE_S) -> None:
        self.lease_s = lease_s
        self._held: dict[Path, Lease] = {}
        self._mutex = threading.RLock()

    def take(self, cell_dir: Path) -> bool:
        """Claim a cell now (no waiting); False when a live holder has it."""
        cell_dir = Path(cell_dir)
        if self.holds(cell_dir):
            return True
        lease = Lease(claim_path(cell_dir), "launcher", "", self.lease_s, on_lost=self._lost)
        if not lease.try_acquire():
            return False
        with self._mutex:
            self._held[cell_dir] = lease
        HEARTBEAT.add(lease)
        return True

    def holds(self, cell_dir: Path) -> bool:
        """Whether the claim is still ours (checked on the storage now)."""
        with self._mutex:
            lease = self._held.get(Path(cell_dir))
        return lease is not None and lease.beat()

    def running(self, cell_dir: Path) -> None:
        """The cell runs in this process from now on: losing its claim stops the process."""
        with self._mutex:
            self._held[Path(cell_dir)].on_lost = exit_on_loss

    def hand_over(self, cell_dir: Path) -> str:
        """The token a worker adopts the claim with. Until it does, the claim stays ours and
        alive; its record vanishing afterwards is the adoption, not a loss."""
        cell_dir = Path(cell_dir)
        with self._mutex:
            lease = self._held[cell_dir]
            lease.on_lost = lambda _: self._drop(cell_dir)
        return lease.token

    def release(self, cell_dir: Path) -> None:
        lease = self._drop(Path(cell_dir))
        if lease is not None:
            lease.release()

    def close(self) -> None:
        with self._mutex:
            held = list(self._held)
        for cell_dir in held:
            self.release(cell_dir)

    def _drop(self, cell_dir: Path) -> Lease | None:
        with self._mutex:
            lease = self._held.pop(cell_dir, None)
        if lease is not None:
            HEARTBEAT.remove(lease)
        return lease

    def _lost(self, lease: Lease) -> None:
        with self._mutex:
            cell_dir = next((d for d, held in self._held.items() if held is lease), None)
        if cell_dir is not None:
            self._drop(cell_dir)
            print(
                f"warning: the claim of {cell_dir.name} was taken over while it waited here "
                f"(by {held_by(cell_dir)}); this launcher will not run it",
                file=sys.stderr,
                flush=True,
            )
