"""The SQL of `outbox check` (`store.integrity`): finding impossible states and
applying the safe repairs `core.integrity` names."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import Connection, func, select, update

from outbox.core.integrity import SchemaFacts
from outbox.core.model import Event, MessageStatus, RecipientStatus
from outbox.store.sql.queries import UNFINISHED, insert_events
from outbox.store.sql.runner import Runner
from outbox.store.tables import UtcDateTime, blob_refs, blobs, events, messages, metadata
from outbox.store.tables import recipients as r

m = messages
FINAL = (MessageStatus.SENT.value, MessageStatus.PARTIALLY_SENT.value,
         MessageStatus.FAILED.value)
NOT_FINISHED = (MessageStatus.QUEUED.value, MessageStatus.DEFERRED.value,
                MessageStatus.HELD.value, MessageStatus.SENDING.value)
HOLDABLE = (MessageStatus.QUEUED.value, MessageStatus.DEFERRED.value)


class SqlIntegrity:
    def __init__(self, runner: Runner) -> None:
        self._run = runner

    async def final_with_pending(self) -> tuple[str, ...]:
        return await self._run.read(final_with_pending)

    async def waiting_blob_uses(self) -> tuple[tuple[str, str, int], ...]:
        return await self._run.read(waiting_blob_uses)

    async def events_out_of_order(self) -> tuple[tuple[str, int, datetime, datetime], ...]:
        return await self._run.read(events_out_of_order)

    async def schema_facts(self) -> SchemaFacts:
        return await self._run.read(schema_facts)

    async def requeue_final(self, ids: Sequence[str], now: datetime, event: Event) -> int:
        return await self._run.write(requeue_final, ids, now, event)

    async def hold_messages(self, ids: Sequence[str], now: datetime, reason: str,
                            event: Event) -> int:
        return await self._run.write(hold_messages, ids, now, reason, event)

    async def restamp_events(self, messages: Sequence[str]) -> int:
        return await self._run.write(restamp_events, messages)

    async def create_indexes(self, names: Sequence[str]) -> int:
        return await self._run.write(create_indexes, names)


def final_with_pending(conn: Connection) -> tuple[str, ...]:
    query = (select(m.c.id).where(m.c.status.in_(FINAL), sa.exists().where(
        r.c.message_id == m.c.id, r.c.status.in_(UNFINISHED))).order_by(m.c.id))
    return tuple(conn.execute(query).scalars())


def waiting_blob_uses(conn: Connection) -> tuple[tuple[str, str, int], ...]:
    query = (select(blob_refs.c.message_id, blobs.c.sha256, blobs.c.size)
             .join(blobs, blobs.c.sha256 == blob_refs.c.sha256)
             .join(m, m.c.id == blob_refs.c.message_id)
             .where(m.c.status.in_(NOT_FINISHED)).order_by(blob_refs.c.message_id))
    return tuple((row[0], row[1], int(row[2])) for row in conn.execute(query))


def events_out_of_order(conn: Connection) -> tuple[tuple[str, int, datetime, datetime], ...]:
    before = func.lag(events.c.at, type_=UtcDateTime()).over(
        partition_by=events.c.message_id, order_by=events.c.id).label("before")
    ordered = select(events.c.message_id, events.c.id, events.c.at, before).subquery()
    query = (select(ordered).where(ordered.c.before.isnot(None),
                                   ordered.c.at < ordered.c.before)
             .order_by(ordered.c.message_id, ordered.c.id))
    return tuple((row[0], int(row[1]), row[2], row[3]) for row in conn.execute(query))


def schema_facts(conn: Connection) -> SchemaFacts:
    from alembic.migration import MigrationContext  # alembic loads only when asked

    from outbox.store.sql.store import head_revision, is_known_revision

    revision = MigrationContext.configure(conn).get_current_revision()
    inspector = sa.inspect(conn)
    present = set(inspector.get_table_names())
    missing_columns = [f"{table.name}.{column.name}"
                       for table in metadata.sorted_tables if table.name in present
                       for column in table.c
                       if column.name not in {c["name"] for c in inspector.get_columns(
                           table.name)}]
    indexes = index_names(conn)
    missing_indexes = [index.name for table in metadata.sorted_tables
                       if table.name in present for index in table.indexes
                       if index.name and index.name not in indexes]
    return SchemaFacts(revision, head_revision(),
                       revision is not None and is_known_revision(revision),
                       tuple(t.name for t in metadata.sorted_tables if t.name not in present),
                       tuple(missing_columns), tuple(sorted(str(i) for i in missing_indexes)))


def index_names(conn: Connection) -> set[str]:
    """Every index in the database, expression indexes included."""
    if conn.dialect.name == "postgresql":
        found = conn.execute(sa.text("SELECT indexname FROM pg_indexes "
                                     "WHERE schemaname = current_schema()"))
    else:
        found = conn.execute(sa.text("SELECT name FROM sqlite_master WHERE type = 'index'"))
    return set(found.scalars())


def requeue_final(conn: Connection, ids: Sequence[str], now: datetime, event: Event) -> int:
    changed = conn.execute(update(m).where(m.c.id.in_(list(ids)), m.c.status.in_(FINAL))
                           .values(status=MessageStatus.QUEUED.value, due_at=now,
                                   updated_at=now).returning(m.c.id)).scalars().all()
    conn.execute(update(r).where(r.c.message_id.in_(changed),
                                 r.c.status == RecipientStatus.DEFERRED.value)
                 .values(status=RecipientStatus.PENDING.value))
    insert_events(conn, [(id, event) for id in changed])
    return len(changed)


def hold_messages(conn: Connection, ids: Sequence[str], now: datetime, reason: str,
                  event: Event) -> int:
    changed = conn.execute(update(m).where(m.c.id.in_(list(ids)), m.c.status.in_(HOLDABLE))
                           .values(status=MessageStatus.HELD.value, due_at=None,
                                   held_since=now, hold_reason=reason, updated_at=now)
                           .returning(m.c.id)).scalars().all()
    insert_events(conn, [(id, event) for id in changed])
    return len(changed)


def restamp_events(conn: Connection, message_ids: Sequence[str]) -> int:
    changed = 0
    for message_id in message_ids:
        latest: datetime | None = None
        query = (select(events.c.id, events.c.at).where(events.c.message_id == message_id)
                 .order_by(events.c.id))
        for id, at in conn.execute(query).all():
            if latest is not None and at < latest:
                conn.execute(update(events).where(events.c.id == id).values(at=latest))
                changed += 1
            else:
                latest = at
    return changed


def create_indexes(conn: Connection, names: Sequence[str]) -> int:
    wanted = set(names) - index_names(conn)
    made = 0
    for table in metadata.sorted_tables:
        for index in table.indexes:
            if index.name in wanted:
                index.create(conn)
                made += 1
    return made

