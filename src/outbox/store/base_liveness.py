"""Which claim owners are alive (`store.liveness`): the protocol; the two backends'
locks are in `store.liveness`. Besides recovery (is this claim's owner dead?),
`outbox restore` asks which processes (`serve`, `worker`, `submission`) still use the
database: those that deliver nothing hold a lock too, under an owner that never
claims, so recovery never asks about it. A restore holds a lock of its own while it
runs, and those processes do not start while it is held."""

from __future__ import annotations

import os
import socket
from collections.abc import Collection
from typing import Protocol

UNDESCRIBED = "an Outbox process"


def label(what: str) -> str:
    """`what` with this process's pid and host: what other processes see."""
    return f"{what}, pid {os.getpid()} on {socket.gethostname()}"


class Liveness(Protocol):
    """Which claim owners are alive (`store.liveness`): each process holds a lock
    for its lifetime that is let go when it dies."""

    def describe_process(self, what: str) -> None:
        """What this process is (`outbox serve`), as `holders()` elsewhere names it;
        before `register`."""

    async def register(self, owner: str) -> None:
        """Take `owner`'s lock; `StorageError` if it cannot be taken."""

    async def keep(self, owner: str) -> None:
        """Make sure the lock is still held (take it again after a lost connection)."""

    async def dead(self, owners: Collection[str]) -> set[str]:
        """Those of `owners` that are provably dead (their lock is free)."""

    async def holders(self) -> list[str]:
        """The other processes that hold a lock now, one line each (`outbox serve, pid
        12 on host-a`)."""

    async def count_alive(self) -> int:
        """How many other processes (`serve`, `worker`, `submission`) hold a lock now."""

    async def forget(self, owners: Collection[str]) -> None:
        """Clean up after dead owners whose claims were recovered."""

    async def left_behind(self) -> set[str]:
        """Dead owners whose lock left something to clean up (`forget`): SQLite's lock
        files of killed processes. Read the claims after it: `forget` only those
        without one, recovery needs the others."""

    async def begin_restore(self) -> str | None:
        """Take the restore's lock (`outbox restore`, until `end_restore`): None once
        taken; what holds it (`outbox restore, pid 12 on host-a`) if another restore
        does. Take it before asking for `holders()`."""

    async def end_restore(self) -> None:
        """Let go of the restore's lock."""

    async def restore_holder(self) -> str | None:
        """What holds the restore's lock now (`outbox restore, pid 12 on host-a`), or
        None. Ask it after `register`: a restore that took its lock first is seen."""

    async def unregister(self, owner: str) -> None:
        """Let go of `owner`'s lock (a clean stop)."""
