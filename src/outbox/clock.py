"""The one place the service reads the wall clock, and the database's clock.

Leases are compared across nodes, so every node must agree on the time:
`DatabaseClock` is this machine's clock corrected by the offset to the
database server's (PostgreSQL), measured at start-up and again every
sweep. A node whose clock is ten minutes ahead then still reads the same
time as the others and never takes over a live claim. With SQLite the
database is a file on this machine and the offset stays zero.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta


def utcnow() -> datetime:
    return datetime.now(UTC)


class DatabaseClock:
    """Callable like `utcnow`, on the database server's time. It never goes back within
    a process: creation times of messages a process accepts one after the other keep
    their order (lists sort by them), even as the offset is measured again."""

    def __init__(self, wall: Callable[[], datetime] = utcnow) -> None:
        self._wall = wall
        self.offset = timedelta(0)
        self._uncertainty: timedelta | None = None  # half the round trip of `offset`'s sample
        self._last: datetime | None = None

    def __call__(self) -> datetime:
        now = self._wall() + self.offset
        if self._last is not None and now < self._last:
            return self._last
        self._last = now
        return now

    def observe(self, server_time: datetime | None, before: datetime, after: datetime) -> None:
        """The server said `server_time` between our `before` and `after` (wall
        times): the offset at the midpoint is off by at most half the round trip. A
        sample with a slower round trip that agrees with the current offset within both
        uncertainties is noise (a loaded machine), not a clock that moved: kept out."""
        if server_time is None:
            return
        half = (after - before) / 2
        sample = server_time - (before + half)
        current = self._uncertainty
        if current is None or half <= current or abs(sample - self.offset) > half + current:
            self.offset = sample
            self._uncertainty = half

    def wall(self) -> datetime:
        return self._wall()
