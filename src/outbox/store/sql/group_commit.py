"""`GroupCommit`: enqueues that arrive while a commit is on its way to disk share the
next one, so one transaction and one flush cover many accepted messages. SQLite
uses it on its single writer; PostgreSQL too, where each message's own
transaction cost a round trip and a WAL flush of its own.

On PostgreSQL a message with a long recipient list commits in a transaction of its own,
beside the groups: in line, the small submits that arrived meanwhile waited for its
20-odd ms of statements (issue 17). Only a single message: with its one idempotency
key it cannot deadlock with a group, where a batch taking two keys in the opposite
order could. SQLite's writer does one transaction at a time whatever the order, and
relies on one group at a time (store/sqlite_writer.py), so there every arrival waits
its turn.

A group is taken when its transaction begins, not before: on SQLite the writer first
waits for its turn among the processes sharing the file (a delivery process holds it a
few milliseconds at a time), and the requests that arrived during that wait went into
the next group. Two groups alternated and each request waited for two commits; taken
at the start of the transaction, the group holds everything that arrived until then
(issue 15: http-lean on SQLite +10 %, six interleaved pairs of `bench/cpu_split.py
--path http-lean`; at 500 msg/s paced, p99 13 -> 9-10 ms).

On PostgreSQL the group is written in autocommit (`Runner.write_alone`): its messages,
recipients, events and blob uses are one statement (sql/group_insert.py), after the
suppression list and idempotency keys are read. A suppression added between that read
and the insert is not seen, as if the message had come a moment earlier; a key taken
meanwhile by another process fails the insert on the unique key (`Conflict`), and the
group is then written message by message, as any conflict is.

A submit whose arrival no transaction has taken after `SUBMIT_WAIT` seconds (another
process holds SQLite's write lock, which would keep it waiting the whole 30 s busy
timeout, or longer behind other writes) is withdrawn and refused with
`DatabaseUnavailable` (503 with Retry-After): taken and withdrawn under one lock, so it
is in no transaction and never will be. Once taken it waits for its transaction, which
has the lock by then."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence

from sqlalchemy import Connection

from outbox.errors import Conflict, DatabaseUnavailable
from outbox.store.sql.messages import insert_one
from outbox.store.sql.queries import insert_messages
from outbox.store.sql.runner import Runner
from outbox.store.sql.wakeup import Notice
from outbox.store.values import NewMessage, RecipientsSuppressed

GROUP_MAX = 200  # messages per group commit
HEAVY = 200  # recipients that make a message commit alone, where writes run side by side
# Seconds a submit waits for a transaction to take it: a group commit takes well under a
# second even behind a claim and a delivery's record; longer is a lock held elsewhere.
SUBMIT_WAIT = 10.0

Arrival = tuple[NewMessage, "asyncio.Future[bool]"]


def _settle(batch: Sequence[Arrival], exc: BaseException) -> None:
    for _, arrived in batch:
        if not arrived.done():
            arrived.set_exception(exc)


class GroupCommit:
    """Messages that arrive while a commit is on its way to disk go together in
    the next one, so one fsync covers many messages. Each caller still returns
    only after the commit holding its message. A batch (`insert_many`) arrives
    and is committed whole."""

    def __init__(self, runner: Runner, notice: Notice | None = None) -> None:
        self._runner = runner
        self._notice = notice  # NOTIFYd by each commit (PostgreSQL, sql/group_insert.py)
        self.notifies = notice is not None
        # Arrivals are added on the event loop and taken where the transaction runs: on
        # SQLite, the writer thread.
        self._lock = threading.Lock()
        self._arriving: list[list[Arrival]] = []
        self._committer: asyncio.Task[None] | None = None
        self._alone: set[asyncio.Task[None]] = set()

    async def insert(self, message: NewMessage) -> bool:
        (created,) = await self._settled(self._arrive([message]))
        return created

    async def insert_many(self, batch: Sequence[NewMessage]) -> list[bool]:
        return await self._settled(self._arrive(batch))

    async def _settled(self, group: list[Arrival]) -> list[bool]:
        """The group's results; `DatabaseUnavailable` if no transaction took it within
        `SUBMIT_WAIT` (then it is withdrawn: never committed)."""
        results = asyncio.gather(*(arrived for _, arrived in group))
        try:
            return list(await asyncio.wait_for(asyncio.shield(results), SUBMIT_WAIT))
        except TimeoutError:
            if not self._withdraw(group):
                return list(await results)  # taken: its transaction holds the lock
        results.cancel()
        raise DatabaseUnavailable(f"the database took no write for {SUBMIT_WAIT:.0f} s (its "
                                  "write lock is held elsewhere); nothing was stored")

    def _withdraw(self, group: list[Arrival]) -> bool:
        """Whether `group` was still waiting to be taken (it is not any more)."""
        with self._lock:
            for n, waiting in enumerate(self._arriving):
                if waiting is group:
                    del self._arriving[n]
                    return True
        return False

    def _arrive(self, batch: Sequence[NewMessage]) -> list[Arrival]:
        loop = asyncio.get_running_loop()
        group: list[Arrival] = [(message, loop.create_future()) for message in batch]
        if (self._runner.parallel_writes and len(batch) == 1
                and len(batch[0].recipients) > HEAVY):
            alone = asyncio.create_task(self._commit(lambda: group))
            self._alone.add(alone)
            alone.add_done_callback(self._alone.discard)
        else:
            with self._lock:
                self._arriving.append(group)
            if self._committer is None or self._committer.done():
                self._committer = asyncio.create_task(self._commit_arrivals())
        return group

    def _next_group(self) -> list[Arrival]:
        """Whole arrivals, up to GROUP_MAX messages (a bigger batch goes alone); none
        when every one waiting was withdrawn meanwhile."""
        with self._lock:
            if not self._arriving:
                return []
            group = self._arriving.pop(0)
            while self._arriving and len(group) + len(self._arriving[0]) <= GROUP_MAX:
                group = group + self._arriving.pop(0)
        return group

    async def _commit_arrivals(self) -> None:
        while self._arriving:  # only this task takes arrivals: a group is waiting
            await self._commit(self._next_group)

    async def _commit(self, take: Callable[[], list[Arrival]]) -> None:
        """What `take` gives, taken once the transaction has begun, in that
        transaction; each waiter hears of its message."""
        batch: list[Arrival] = []

        def insert_taken(conn: Connection) -> list[bool | RecipientsSuppressed]:
            batch.extend(take())
            if not batch:  # withdrawn while this transaction waited to begin
                return []
            return insert_messages(conn, [message for message, _ in batch], self._notice)

        try:  # one statement on PostgreSQL (sql/group_insert.py): no transaction
            created = await self._runner.write_alone(insert_taken)
        except Conflict:  # e.g. a reused id: then each on its own
            await self._insert_one_by_one(batch)
            return
        except Exception as exc:  # every waiter must hear of the failure
            # The transaction may have failed before it began: then the group it would
            # have taken fails with it, as the next one would.
            _settle(batch or take(), exc)
            return
        for (_, arrived), result in zip(batch, created, strict=True):
            if arrived.done():
                continue
            if isinstance(result, RecipientsSuppressed):
                arrived.set_exception(result)
            else:
                arrived.set_result(result)

    async def _insert_one_by_one(self, batch: Sequence[Arrival]) -> None:
        for message, arrived in batch:
            try:
                is_new = await insert_one(self._runner, message, self._notice)
            except Exception as exc:
                _settle([(message, arrived)], exc)
                continue
            if not arrived.done():
                arrived.set_result(is_new)

    async def close(self) -> None:
        await asyncio.gather(*self._alone, *([self._committer] if self._committer else []),
                             return_exceptions=True)
