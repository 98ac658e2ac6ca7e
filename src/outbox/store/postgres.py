"""PostgreSQL: the engine, the claim (`FOR UPDATE SKIP LOCKED`), LISTEN/NOTIFY.

Several nodes claim from one table at once: each picks due rows nobody else
has locked, so no row is handed out twice and no claimer waits on another.
Enqueues that arrive together share one transaction (sql/group_commit.py): a
message's own transaction cost a round trip and a WAL flush of its own.
An enqueue's commit `NOTIFY`s a channel itself (sql/group_insert.py); retry and
release NOTIFY it right after they commit. Idle workers `LISTEN` on one dedicated
connection and fall back to their timeout if it is lost.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import asyncpg
import structlog
from sqlalchemy import ColumnElement, Connection, Update, func, select, update
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from outbox.store.liveness import AdvisoryLocks
from outbox.store.sql.bound_lists import in_bound_list
from outbox.store.sql.busy_claim import due_beyond_busy
from outbox.store.sql.messages import Hydrated
from outbox.store.sql.outage import causes
from outbox.store.sql.queries import CLAIM_LIMIT, CLAIMED, DUE, hydrate
from outbox.store.sql.runner import Body, P, T, translate_errors
from outbox.store.sql.store import SqlStore
from outbox.store.sql.wakeup import Notice, Wakeup
from outbox.store.tables import messages

CHANNEL = "outbox_due"
LISTEN_ERRORS = (SQLAlchemyError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError)
MIGRATION_LOCK = 0x0B0C5  # pg_advisory_xact_lock key: one migrating node at a time

log = structlog.get_logger("outbox.store")


# A session idle inside a transaction this long belongs to a process that froze in it
# (stopped, suspended, hung): PostgreSQL ends the session, and with it the locks that kept
# that process's claims out of every other worker's recovery, and the claims in "sending",
# however long the freeze lasts. Outbox's own transactions are never idle for more than
# moments: a backup writes files between reads, a few seconds at worst.
IDLE_IN_TRANSACTION_MS = 60_000


def create_engine(url: URL, pool_size: int = 10) -> AsyncEngine:
    """Connections are handed out most recently used first (`pool_use_lifo`). First in,
    first out, the pool went round every connection it had opened (serve opens about 15
    as it starts), and each statement is prepared on each connection apart (asyncpg's
    cache, with its array types looked up in the catalog): at a serve's start the first
    submits each met a cold connection. `bench/compare.py --paths http-paced` on
    PostgreSQL: the first three sequential submits took 10-16 ms against 3-4 after, and
    at 900 a second 50-100 of the first 180 took over 10 ms; last in, first out, only
    the first is slow, and the connections that go unused are the ones that stay cold."""
    settings = {"idle_in_transaction_session_timeout": str(IDLE_IN_TRANSACTION_MS),
                # Outbox's statements are short; PostgreSQL compiles one with LLVM once its
                # estimated cost passes jit_above_cost, which a big queue's estimates (or
                # a table not yet analyzed) reach: 7 ms of compiling for a claim that ran
                # in 0.06 ms (EXPLAIN ANALYZE over bench/busy_claim.py's queue).
                "jit": "off"}
    return create_async_engine(url, pool_size=pool_size, max_overflow=pool_size,
                               pool_recycle=3600, pool_use_lifo=True,
                               connect_args={"server_settings": settings})


def create_store(url: URL, pool_size: int = 10) -> SqlStore:
    """The root store on the PostgreSQL database at `url` (nothing is opened yet)."""
    engine = create_engine(url, pool_size)
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    runner = PostgresRunner(engine)
    return SqlStore(runner, pick_due, AdvisoryLocks(dsn), wakeup=NotifyWakeup(engine),
                    lock_schema=lock_schema, snapshot=runner.snapshot)


class PostgresRunner:
    """Each write one transaction on a pooled asyncpg connection (`run_sync`); each read,
    and each `write_alone` (one writing statement), its statements in autocommit."""

    parallel_writes = True

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        # At READ COMMITTED every statement sees what was committed when it began, in a
        # transaction or not: BEGIN and COMMIT around a read cost two round trips and
        # bought nothing (one read per message on SMTP submission, its idempotency key).
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")

    async def read(self, body: Body[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        async with translate_errors(), self._autocommit.connect() as conn:
            return await conn.run_sync(body, *args, **kwargs)

    async def write(self, body: Body[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        # The commit apart: a connection lost before it leaves nothing stored (the server
        # rolls back), one lost during it leaves the outcome unknown.
        async with translate_errors(), self.engine.connect() as conn:
            transaction = await conn.begin()
            result = await conn.run_sync(body, *args, **kwargs)
            async with translate_errors(may_have_committed=reached_server):
                await transaction.commit()
            return result

    # Writes do not queue here (each takes a pooled connection), so none goes first.
    write_first = write

    async def write_alone(self, body: Body[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        # Its statement commits itself: once connected, a lost connection may have
        # committed it (unless asyncpg never sent it).
        async with (translate_errors(), self._autocommit.connect() as conn,
                    translate_errors(may_have_committed=reached_server)):
            return await conn.run_sync(body, *args, **kwargs)

    async def snapshot(self, body: Body[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`body` in one REPEATABLE READ, READ ONLY transaction: every table as of one
        moment, while other sessions keep writing."""
        async with translate_errors(), self.engine.connect() as conn:
            snapshot = await conn.execution_options(isolation_level="REPEATABLE READ",
                                                    postgresql_readonly=True)
            async with snapshot.begin():
                return await snapshot.run_sync(body, *args, **kwargs)

    async def close(self) -> None:
        await self.engine.dispose()


def reached_server(exc: BaseException) -> bool:
    """Whether the statement `exc` interrupted may have reached PostgreSQL: not when
    asyncpg refused to send it, on a connection it knew was closed ("connection is
    closed", InterfaceError) or that had just received its FATAL ("cannot switch to
    state ..."; InternalClientError, and asyncpg aborts the connection unsent)."""
    return not any(isinstance(link, (asyncpg.InterfaceError, asyncpg.InternalClientError))
                   for link in causes(exc))


def pick_due(conn: Connection, params: dict[str, Any]) -> Hydrated:
    """The claim: due rows nobody else has locked, oldest due first (with `c_busy`,
    only those with mail for a relay not in it: worker/relay_room.py)."""
    if "c_busy" in params:
        picks = due_beyond_busy(conn, params["c_now"], params["c_limit"], params["c_busy"],
                                postgres=True)
        order = {id: place for place, (id, _) in enumerate(picks)}
        taken = conn.execute(_CLAIM_PICKED, {**params, "b_ids": list(order)}).all()
        return Hydrated(hydrate(conn, sorted(taken, key=lambda row: order[row[_ID]])))
    return Hydrated(hydrate(conn, sorted(conn.execute(_CLAIM, params).all(),
                                         key=lambda row: row[_WAS_DUE])))


def _claim(*conditions: ColumnElement[bool]) -> Update:
    picked = (select(messages.c.id, messages.c.due_at).where(DUE, *conditions)
              .order_by(messages.c.due_at).limit(CLAIM_LIMIT)
              .with_for_update(skip_locked=True).cte("picked"))
    return (update(messages).where(messages.c.id == picked.c.id).values(CLAIMED)
            .returning(*messages.c, picked.c.due_at.label("was_due")))


_CLAIM = _claim()
# The rows busy_claim.py picked, and locked, for the claim that skips busy relays.
_CLAIM_PICKED = (update(messages).where(in_bound_list(messages.c.id, "b_ids", postgres=True))
                 .values(CLAIMED).returning(*messages.c))
_ID = tuple(messages.c.keys()).index("id")
_WAS_DUE = len(messages.c)  # by position: a Row's attribute costs an AttributeError first


def lock_schema(conn: Connection) -> None:
    """One migrating node at a time: concurrent write transactions do not serialise."""
    conn.execute(select(func.pg_advisory_xact_lock(MIGRATION_LOCK)))


class NotifyWakeup(Wakeup):
    """Wake-ups across processes: NOTIFY after each announcement, LISTEN while waiting.

    A NOTIFY carries this process's token, and comes back to this process too: that echo
    is ignored, since `announce` has woken this process's waiters already. Heard, it
    would wake a worker that has just claimed the new mail into a claim that finds
    nothing, once per message."""

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__()
        self._engine = engine
        self._token = secrets.token_hex(8)
        self._listener: AsyncConnection | None = None
        self._driver: Any = None  # the asyncpg connection under `_listener`
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._notifier: asyncio.Task[None] | None = None
        self._notify_again = False

    def announce(self, *, notified: bool = False) -> None:
        super().announce()
        if notified:
            return
        if self._notifier is not None and not self._notifier.done():
            self._notify_again = True  # one more NOTIFY after the one in flight
            return
        self._notifier = asyncio.create_task(self._send_notifications())

    def notice(self) -> Notice:
        return CHANNEL, self._token

    async def _send_notifications(self) -> None:
        """A NOTIFY of its own, after a commit that did not carry one (a retry, a
        release; the group commit's carries its own, sql/group_insert.py).
        Announcements made meanwhile are folded into one more NOTIFY."""
        again = True
        while again:
            self._notify_again = False
            try:
                async with self._autocommit.connect() as conn:
                    await conn.execute(select(func.pg_notify(CHANNEL, self._token)))
            except LISTEN_ERRORS as exc:
                log.warning("cannot notify other workers; they will poll", error=str(exc))
                return
            again = self._notify_again

    async def listen(self) -> None:
        if self._driver is not None and not self._driver.is_closed():
            return
        await self._drop_listener()
        try:
            self._listener = await self._engine.connect()
            raw = await self._listener.get_raw_connection()
            self._driver = raw.driver_connection
            await self._driver.add_listener(CHANNEL, self._on_notify)
        except LISTEN_ERRORS as exc:
            log.warning("cannot listen for new mail; polling instead", error=str(exc))
            await self._drop_listener()

    def _on_notify(self, _connection: object, _pid: int, _channel: str, payload: str) -> None:
        if payload != self._token:
            self._event.set()

    async def _drop_listener(self) -> None:
        listener, self._listener, self._driver = self._listener, None, None
        if listener is not None:
            try:
                await listener.invalidate()
                await listener.close()
            except LISTEN_ERRORS:
                pass  # already gone; nothing to give back

    async def close(self) -> None:
        if self._notifier is not None:
            await asyncio.gather(self._notifier, return_exceptions=True)
        await self._drop_listener()
