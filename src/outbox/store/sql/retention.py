"""The SQL of retention (`store.retention`): batches of at most `limit` rows, one
transaction each, picked through the indexes on `created_at`, so a round costs
the same however much history is kept."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, delete, select, text, update

from outbox.core.model import MessageStatus
from outbox.store.sql.runner import Runner
from outbox.store.sql.statistics import refresh_statistics
from outbox.store.tables import alerts, attempts, blob_refs, events, messages, recipients
from outbox.store.tables_webhooks import webhook_deliveries

m = messages
FINISHED = (MessageStatus.SENT.value, MessageStatus.PARTIALLY_SENT.value,
            MessageStatus.FAILED.value, MessageStatus.CANCELLED.value)
CHILDREN = (recipients, attempts, events, blob_refs)


class SqlRetention:
    def __init__(self, runner: Runner) -> None:
        self._run = runner

    async def purge_idempotency_keys(self, accepted_before: datetime, limit: int) -> int:
        return await self._run.write(purge_idempotency_keys, accepted_before, limit)

    async def purge_finished(self, finished_before: datetime, limit: int) -> int:
        return await self._run.write(purge_finished, finished_before, limit)

    async def purge_cleared_alerts(self, cleared_before: datetime, limit: int) -> int:
        return await self._run.write(purge_cleared_alerts, cleared_before, limit)

    async def reclaim_space(self, max_pages: int) -> int:
        return await self._run.write(reclaim_space, max_pages)

    async def refresh_statistics(self) -> tuple[str, ...]:
        # A read: on PostgreSQL it runs in autocommit, as ANALYZE may; on SQLite, where
        # it does nothing, it takes no turn of the one writer.
        return await self._run.read(refresh_statistics)


def purge_idempotency_keys(conn: Connection, accepted_before: datetime, limit: int) -> int:
    picked = (select(m.c.id).where(m.c.created_at < accepted_before,
                                   m.c.idempotency_key.isnot(None))
              .order_by(m.c.created_at).limit(limit))
    ids = list(conn.execute(picked).scalars())
    if ids:
        conn.execute(update(m).where(m.c.id.in_(ids))
                     .values(idempotency_key=None, request_hash=None))
    return len(ids)


def purge_finished(conn: Connection, finished_before: datetime, limit: int) -> int:
    # A message is accepted before it finishes: created_at bounds the index range.
    picked = (select(m.c.id).where(m.c.status.in_(FINISHED), m.c.created_at < finished_before,
                                   m.c.updated_at < finished_before)
              .order_by(m.c.created_at).limit(limit))
    ids = list(conn.execute(picked).scalars())
    if not ids:
        return 0
    gone_events = select(events.c.id).where(events.c.message_id.in_(ids))
    conn.execute(delete(webhook_deliveries)
                 .where(webhook_deliveries.c.event_id.in_(gone_events)))
    for child in CHILDREN:
        conn.execute(delete(child).where(child.c.message_id.in_(ids)))
    conn.execute(delete(m).where(m.c.id.in_(ids)))
    return len(ids)


def purge_cleared_alerts(conn: Connection, cleared_before: datetime, limit: int) -> int:
    picked = (select(alerts.c.id).where(alerts.c.cleared_at < cleared_before)
              .order_by(alerts.c.id).limit(limit))
    ids = list(conn.execute(picked).scalars())
    if ids:
        conn.execute(delete(alerts).where(alerts.c.id.in_(ids)))
    return len(ids)


def reclaim_space(conn: Connection, max_pages: int) -> int:
    if conn.dialect.name != "sqlite":
        return 0
    if conn.execute(text("PRAGMA auto_vacuum")).scalar() != 2:  # 2: incremental
        return 0
    free = int(conn.execute(text("PRAGMA freelist_count")).scalar() or 0)
    if free:
        # Each step of the statement frees one page, and Python's sqlite3 steps a
        # statement without result columns only once: one page per execution.
        raw = conn.connection.dbapi_connection
        assert raw is not None
        cursor = raw.cursor()
        for _ in range(min(free, max_pages)):
            cursor.execute("PRAGMA incremental_vacuum(1)")
    return free - int(conn.execute(text("PRAGMA freelist_count")).scalar() or 0)
