"""The liveness lock of a process that writes to the database but delivers nothing
itself: `outbox serve`'s own process (its delivery processes take theirs only after a
second or two of imports, and none while one restarts) and `outbox submission`.

`outbox restore` refuses while any lock is held (`service.archive`): without these, a
restore just after serve started, or beside a submission listener, went ahead and the
process went on writing into the database swapped under it. The owner is one of its
own that never claims, so recovery (`worker.sweeper`) never asks whether it is dead;
killed, the process lets go of its lock as any other does.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from outbox.errors import StorageError
from outbox.service import Outbox
from outbox.supervision import every, supervise
from outbox.worker.loop import LIVENESS_EVERY, new_owner_id

log = structlog.get_logger("outbox.runtime")

TAKE_FOR = 5.0  # seconds of tries before start-up gives up on the lock
TRY_EVERY = 0.1  # a restore reading the lock files holds one for a moment


class Presence:
    """This process's lock while it runs; `release()` at its end."""

    def __init__(self, outbox: Outbox, owner: str) -> None:
        self._outbox = outbox
        self.owner = owner
        monitor = outbox.loops.register("liveness lock", critical=False,
                                        max_backoff=LIVENESS_EVERY)
        # After a lost PostgreSQL connection the lock is taken again (`keep`).
        self._keeping = asyncio.create_task(supervise(monitor, every(
            LIVENESS_EVERY, lambda: outbox.store.liveness.keep(owner))))

    @classmethod
    async def take(cls, outbox: Outbox, what: str) -> Presence:
        """`what` (`outbox serve`) is how `outbox restore` names this process."""
        liveness = outbox.store.liveness
        liveness.describe_process(what)
        owner = new_owner_id()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TAKE_FOR
        while True:
            try:
                await liveness.register(owner)
                return cls(outbox, owner)
            except StorageError:
                if loop.time() >= deadline:
                    raise
            await asyncio.sleep(TRY_EVERY)

    async def release(self) -> None:
        self._keeping.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._keeping
        try:
            await self._outbox.store.liveness.unregister(self.owner)
        except Exception as exc:  # exiting anyway: the lock goes with the process
            log.warning("cannot let go of the liveness lock", error=str(exc))
