"""Which claim owners are alive (`store.liveness`): the protocol; the two backends'
locks are in `store.liveness`. Besides recovery (is this claim's owner dead?),
`outbox restore` asks whether any `serve` or `worker` still uses the database."""

from __future__ import annotations

from collections.abc import Collection
from typing import Protocol


class Liveness(Protocol):
    """Which claim owners are alive (`store.liveness`): each process holds a lock
    for its lifetime that is let go when it dies."""

    async def register(self, owner: str) -> None:
        """Take `owner`'s lock; `StorageError` if it cannot be taken."""

    async def keep(self, owner: str) -> None:
        """Make sure the lock is still held (take it again after a lost connection)."""

    async def dead(self, owners: Collection[str]) -> set[str]:
        """Those of `owners` that are provably dead (their lock is free)."""

    async def count_alive(self) -> int:
        """How many other processes (`serve`, `worker`) hold their lock now."""

    async def forget(self, owners: Collection[str]) -> None:
        """Clean up after dead owners whose claims were recovered."""

    async def unregister(self, owner: str) -> None:
        """Let go of `owner`'s lock (a clean stop)."""
