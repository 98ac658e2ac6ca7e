"""SQLite: the engine and its pragmas, write transactions, the claim, the wake-up.

Every write transaction starts with `BEGIN IMMEDIATE`, which takes SQLite's
single write lock up front: two processes sharing the file can never pick
the same due rows, and a writer never fails half-way on a lock upgrade.
Within one process, writers also queue on an asyncio lock, so they wait
for each other without SQLite's sleeping busy handler. Reads use a plain
(deferred) `BEGIN` and run beside the writer thanks to WAL.

Wake-ups are in-process only: other processes are noticed by the timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, event, select, update
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from outbox.store.rows import AnyRow
from outbox.store.sql import SqlStore, due_filter, translate_errors
from outbox.store.tables import messages

BUSY_TIMEOUT_MS = 30_000
PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",  # a commit is on disk before enqueue returns
    f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}",
    "PRAGMA foreign_keys=ON",
)
BEGIN_OPTION = "outbox_sqlite_begin"


def create_engine(url: URL) -> AsyncEngine:
    """An aiosqlite engine where SQLAlchemy, not the sqlite3 module, emits BEGIN."""
    engine = create_async_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})
    event.listen(engine.sync_engine, "connect", _on_connect)
    event.listen(engine.sync_engine, "begin", _on_begin)
    return engine


def _on_connect(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
    dbapi_connection.isolation_level = None  # the driver must not BEGIN on its own
    cursor = dbapi_connection.cursor()
    for pragma in PRAGMAS:
        cursor.execute(pragma)
    cursor.close()


def _on_begin(conn: Connection) -> None:
    mode = conn.get_execution_options().get(BEGIN_OPTION, "DEFERRED")
    conn.exec_driver_sql(f"BEGIN {mode}")


class SqliteStore(SqlStore):
    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine)
        self._writer = engine.execution_options(**{BEGIN_OPTION: "IMMEDIATE"})
        self._write_lock = asyncio.Lock()

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        async with self._write_lock, translate_errors(), self._writer.begin() as conn:
            yield conn

    async def _pick_due(self, conn: AsyncConnection, values: dict[str, Any], now: datetime,
                        limit: int) -> Sequence[AnyRow]:
        # Safe as two statements: BEGIN IMMEDIATE holds the write lock throughout.
        # Selecting first keeps the due order, which RETURNING does not promise.
        due = (select(messages.c.id).where(due_filter(now))
               .order_by(messages.c.due_at).limit(limit))
        ids = (await conn.execute(due)).scalars().all()
        if not ids:
            return []
        claim = (update(messages).where(messages.c.id.in_(ids)).values(values)
                 .returning(*messages.c))
        claimed = {row.id: row for row in await conn.execute(claim)}
        return [claimed[id] for id in ids]
