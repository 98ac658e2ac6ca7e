"""Crash recovery is a query (STYLE principle 5), run at start-up and then
every `[delivery] sweep_interval` by each worker.

One sweep: read the database's clock (leases are compared on it; the skew
measured is kept in the store for `outbox doctor`, at most once a minute unless
it moved by a second or more), find the
owners that hold claims, ask `store.liveness` which of them are provably dead
(their process's lock is free), and recover at once the claims of the dead
and every claim past its lease (a hung or paused process), each with its
verdict from `core.recovery`.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Callable
from datetime import datetime, timedelta

import structlog

from outbox.clock import DatabaseClock
from outbox.core.recovery import AbandonedClaim, Recovery, RecoveryVerdict
from outbox.store.base import ClockReading, Store

log = structlog.get_logger("outbox.worker")

READING_EVERY = timedelta(minutes=1)  # a clock reading is stored at most this often...
READING_MOVED = 1.0  # ...unless the skew moved by this many seconds


class Sweeper:
    def __init__(self, store: Store, owner: str, recovery: Recovery,
                 clock: Callable[[], datetime], rng: random.Random) -> None:
        self.store = store
        self.owner = owner
        self.recovery = recovery
        self._clock = clock
        self._rng = rng
        self._recorded: ClockReading | None = None

    async def sweep(self) -> list[str]:
        """One round; returns the ids of the messages recovered."""
        await self.read_database_clock()
        dead = await self._confirmed_dead()
        recovered = await self.store.messages.recover_stale(self._clock(), self._decide, dead)
        if dead:
            await self.store.liveness.forget(dead)
        if recovered:
            log.warning("recovered claims of workers that are gone or stopped answering; "
                        "their messages are back in the queue", count=len(recovered),
                        dead_workers=sorted(dead))
        return recovered

    async def give_back_own(self) -> list[str]:
        """At a clean stop: whatever this process still holds goes back now."""
        return await self.store.messages.recover_stale(self._clock(), self._decide,
                                                       [self.owner])

    async def read_database_clock(self) -> None:
        clock = self._clock
        if not isinstance(clock, DatabaseClock):
            return
        before = clock.wall()
        server_time = await self.store.database_time()
        clock.observe(server_time, before, clock.wall())
        if server_time is not None:
            await self._record_skew(clock.wall(), -clock.offset.total_seconds())

    async def _record_skew(self, now: datetime, skew: float) -> None:
        last = self._recorded
        if last is not None and now - last.measured_at < READING_EVERY \
                and abs(skew - last.skew_seconds) < READING_MOVED:
            return
        reading = ClockReading(f"delivery on {socket.gethostname()}", "the database server",
                               round(skew, 3), now)
        await self.store.alerts.record_clock_reading(reading)
        self._recorded = reading

    async def _confirmed_dead(self) -> set[str]:
        others = await self.store.messages.claim_holders() - {self.owner}
        return await self.store.liveness.dead(others) if others else set()

    def _decide(self, claim: AbandonedClaim) -> RecoveryVerdict:
        return self.recovery.decide(claim, self._clock(), self._rng)
