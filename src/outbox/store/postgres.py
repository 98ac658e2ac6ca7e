"""PostgreSQL: the engine, the claim (`FOR UPDATE SKIP LOCKED`), LISTEN/NOTIFY.

Several nodes claim from one table at once: each picks due rows nobody else
has locked, so no row is handed out twice and no claimer waits on another.
Enqueue, retry and release `NOTIFY` a channel right after they commit; idle
workers `LISTEN` on one dedicated connection and fall back to their timeout
if it is lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg
import structlog
from sqlalchemy import Connection, func, select, update
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from outbox.store.rows import AnyRow
from outbox.store.sql import Body, P, SqlStore, T, due_filter, translate_errors
from outbox.store.tables import messages

CHANNEL = "outbox_due"
LISTEN_ERRORS = (SQLAlchemyError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError)
MIGRATION_LOCK = 0x0B0C5  # pg_advisory_xact_lock key: one migrating node at a time

log = structlog.get_logger("outbox.store")


def create_engine(url: URL) -> AsyncEngine:
    return create_async_engine(url, pool_size=10, max_overflow=10, pool_recycle=3600)


class PostgresStore(SqlStore):
    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__()
        self.engine = engine
        self._listener: AsyncConnection | None = None
        self._driver: Any = None  # the asyncpg connection under `_listener`
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._notifier: asyncio.Task[None] | None = None
        self._notify_again = False

    async def _read(self, body: Body[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        async with translate_errors(), self.engine.begin() as conn:
            return await conn.run_sync(body, *args, **kwargs)

    async def _write(self, body: Body[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        async with translate_errors(), self.engine.begin() as conn:
            return await conn.run_sync(body, *args, **kwargs)

    def _pick_due(self, conn: Connection, values: dict[str, Any], now: datetime,
                  limit: int) -> Sequence[AnyRow]:
        picked = (select(messages.c.id, messages.c.due_at).where(due_filter(now))
                  .order_by(messages.c.due_at).limit(limit)
                  .with_for_update(skip_locked=True).cte("picked"))
        claim = (update(messages).where(messages.c.id == picked.c.id).values(values)
                 .returning(*messages.c, picked.c.due_at.label("was_due")))
        return sorted(conn.execute(claim).all(), key=lambda row: row.was_due)

    def _announce(self) -> None:
        super()._announce()
        if self._notifier is not None and not self._notifier.done():
            self._notify_again = True  # one more NOTIFY after the one in flight
            return
        self._notifier = asyncio.create_task(self._send_notifications())

    async def _send_notifications(self) -> None:
        """NOTIFY after the commit, not in it: PostgreSQL serialises the commits
        of notifying transactions, which would undo group commit. Announcements
        made meanwhile are folded into one more NOTIFY."""
        again = True
        while again:
            self._notify_again = False
            try:
                async with self._autocommit.connect() as conn:
                    await conn.execute(select(func.pg_notify(CHANNEL, "")))
            except LISTEN_ERRORS as exc:
                log.warning("cannot notify other workers; they will poll", error=str(exc))
                return
            again = self._notify_again

    def _lock_schema(self, conn: Connection) -> None:
        conn.execute(select(func.pg_advisory_xact_lock(MIGRATION_LOCK)))

    async def _listen(self) -> None:
        if self._driver is not None and not self._driver.is_closed():
            return
        await self._drop_listener()
        try:
            self._listener = await self.engine.connect()
            raw = await self._listener.get_raw_connection()
            self._driver = raw.driver_connection
            await self._driver.add_listener(CHANNEL, self._on_notify)
        except LISTEN_ERRORS as exc:
            log.warning("cannot listen for new mail; polling instead", error=str(exc))
            await self._drop_listener()

    def _on_notify(self, *_: object) -> None:
        self._wakeup.set()

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
        await self.engine.dispose()
