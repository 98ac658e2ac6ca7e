"""The liveness lock of a process that writes to the database but delivers nothing
itself: `outbox serve`'s own process (its delivery processes take theirs only after a
second or two of imports, and none while one restarts), `outbox submission`, and
`outbox worker` (its webhook sender runs before its delivery takes its lock).

`outbox restore` refuses while any lock is held (`service.archive`): without these, a
restore just after serve started, or beside a submission listener, went ahead and the
process went on writing into the database swapped under it. The owner is one of its
own that never claims, so recovery (`worker.sweeper`) never asks whether it is dead;
killed, the process lets go of its lock as any other does.

The other way round, a process does not start while a restore runs: once its lock is
held, it asks whether a restore holds the restore's lock, and if one does it lets go
of its own and tries again, then refuses with one line naming the restore. The order
closes the window between a restore's look and its change (`store.liveness`). It
refuses rather than waits: a restore takes minutes on a large queue, and a process
that waited would sit on its ports answering nothing, holding what it had read of the
database before the restore replaced it. A process manager starts it again.

Once started, it removes the lock files that killed processes left (SQLite; those of
owners that still hold claims stay until recovery has them back).
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from outbox.errors import Conflict, StorageError
from outbox.service import Outbox
from outbox.service.outbox import restoring
from outbox.supervision import every, supervise
from outbox.worker.loop import LIVENESS_EVERY, new_owner_id

log = structlog.get_logger("outbox.runtime")

# Seconds of tries before start-up gives up on the lock: a restore that is itself about
# to be refused (this process's lock is held) lets go of its own within milliseconds.
TAKE_FOR = 5.0
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
        """`what` (`outbox serve`) is how `outbox restore` names this process.
        `Conflict` while a restore runs."""
        outbox.store.liveness.describe_process(what)
        owner = new_owner_id()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TAKE_FOR
        while True:
            try:
                await _take_unless_restoring(outbox, owner, what)
                break
            except (StorageError, Conflict):
                if loop.time() >= deadline:
                    raise
            await asyncio.sleep(TRY_EVERY)
        await _remove_stale(outbox)
        return cls(outbox, owner)

    async def release(self) -> None:
        self._keeping.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._keeping
        try:
            await self._outbox.store.liveness.unregister(self.owner)
        except Exception as exc:  # exiting anyway: the lock goes with the process
            log.warning("cannot let go of the liveness lock", error=str(exc))


async def _take_unless_restoring(outbox: Outbox, owner: str, what: str) -> None:
    """`owner`'s lock, then a look for a restore's: in this order (module docstring)."""
    liveness = outbox.store.liveness
    await liveness.register(owner)
    try:
        restore = await liveness.restore_holder()
    except BaseException:
        await liveness.unregister(owner)
        raise
    if restore is not None:
        await liveness.unregister(owner)
        raise restoring(outbox.settings, restore, what)


async def _remove_stale(outbox: Outbox) -> None:
    """The lock files killed processes left (SQLite); those of owners holding claims
    stay for recovery, which needs them to tell their owner is dead. Claims are read
    after the files: a free file's owner is dead, so each claim it made is seen."""
    liveness = outbox.store.liveness
    try:
        stale = await liveness.left_behind()
        if stale:
            stale -= await outbox.store.messages.claim_holders()
            await liveness.forget(stale)
    except Exception as exc:  # only files left behind: the next start tries again
        log.warning("cannot remove the lock files of stopped processes", error=str(exc))
        return
    if stale:
        log.info("removed the lock files of stopped processes", owners=sorted(stale))
