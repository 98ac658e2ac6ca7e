"""`Wakeup`: how an idle worker hears that a message may have become due.

The queue calls `announce()` after a commit that made mail due (enqueue,
retry, release); `wait(timeout)` returns on an announcement or after
`timeout` seconds. This one wakes waiters in this process only;
sqlite_wakeup.py extends it with datagrams between the processes on one
SQLite file, postgres.py with LISTEN/NOTIFY across processes.
"""

from __future__ import annotations

import asyncio
from contextlib import suppress

Notice = tuple[str, str]  # a NOTIFY's channel and payload, sent with a commit


class Wakeup:
    """In-process wake-ups."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def announce(self, *, notified: bool = False) -> None:
        """A message may have become due: wake this process's waiters (and,
        where the backend can, other processes', unless `notified`: the commit told
        them, with `notice`)."""
        self._event.set()

    def notice(self) -> Notice | None:
        """What a commit can carry to wake the other processes as it ends (PostgreSQL's
        NOTIFY, sql/group_insert.py), or None where only `announce` can."""
        return None

    async def wait(self, timeout: float) -> None:
        """Return on an announcement (made since the last wait returned) or
        after `timeout` seconds."""
        await self.listen()
        with suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout)
        self._event.clear()

    async def listen(self) -> None:
        """Make sure announcements from other processes reach `wait` (none here)."""

    async def close(self) -> None:
        """Finish announcing and stop listening (nothing to do here)."""
