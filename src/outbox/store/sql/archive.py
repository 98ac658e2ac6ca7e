"""The SQL of backup and restore (`store.archive`): every table as portable rows,
and rows back into a fresh schema at the backup's revision.

Rows are JSON-ready dicts: datetimes as ISO 8601 text (UTC), bytes as base64, JSON
columns as they are, so a SQLite backup loads into PostgreSQL and back. Columns are
typed by `store.tables` (the head schema); a backup of an older revision simply
lacks the columns added since, and is loaded at its revision, then upgraded.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy import Connection, func, insert, select

from outbox.core.model import MessageStatus
from outbox.core.recovery import Cause
from outbox.errors import Conflict
from outbox.store.base_archive import Decide, Dumped, Loaded, PortableRow, TableSink, TableSource
from outbox.store.sql.recovery import abandoned_claim, apply_verdicts
from outbox.store.sql.runner import Runner
from outbox.store.tables import UtcDateTime, messages, metadata

INSERT_BATCH = 500
READ_BATCH = 1000
Snapshot = Callable[..., Awaitable[Any]]


class SqlArchive:
    def __init__(self, runner: Runner, snapshot: Snapshot) -> None:
        self._run = runner
        self._snapshot = snapshot

    async def table_counts(self) -> dict[str, int]:
        return await self._run.read(table_counts)

    async def dump_tables(self, sink: TableSink, skip: frozenset[str] = frozenset()
                          ) -> Dumped:
        dumped: Dumped = await self._snapshot(dump_tables, sink, skip)
        return dumped

    async def load_tables(self, source: TableSource, revision: str, now: datetime,
                          decide: Decide, *, force: bool) -> Loaded:
        return await self._run.write(load_tables, source, revision, now, decide, force)


def existing_columns(conn: Connection) -> dict[str, set[str]]:
    """The Outbox tables present in the database, with their columns."""
    inspector = sa.inspect(conn)
    present = set(inspector.get_table_names())
    return {table.name: {column["name"] for column in inspector.get_columns(table.name)}
            for table in metadata.sorted_tables if table.name in present}


def table_counts(conn: Connection) -> dict[str, int]:
    return {name: int(conn.execute(select(func.count()).select_from(
        metadata.tables[name])).scalar() or 0) for name in existing_columns(conn)}


def dump_tables(conn: Connection, sink: TableSink, skip: frozenset[str]) -> Dumped:
    from alembic.migration import MigrationContext  # alembic loads only when asked

    revision = MigrationContext.configure(conn).get_current_revision() or ""
    counts: dict[str, int] = {}
    for name, present in existing_columns(conn).items():
        if name in skip:
            continue
        table = metadata.tables[name]
        columns = [column for column in table.c if column.name in present]
        query = select(*columns).order_by(*table.primary_key.columns)
        found = conn.execution_options(yield_per=READ_BATCH).execute(query)
        counts[name] = sink(name, (encode_row(table, row._mapping) for row in found))
    return Dumped(conn.dialect.name, revision, counts)


def encode_row(table: sa.Table, row: Any) -> PortableRow:
    encoded: PortableRow = {}
    for key, value in row.items():
        if isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, bytes | memoryview):
            value = base64.b64encode(bytes(value)).decode()
        encoded[key] = value
    return encoded


def decode_row(table: sa.Table, row: PortableRow) -> dict[str, Any]:
    decoded: dict[str, Any] = {}
    for key, value in row.items():
        column = table.c.get(key)
        if column is None:
            raise Conflict(f"the backup's table {table.name} has a column {key} that this "
                           "Outbox does not know", hint="restore with the Outbox version that "
                           "made the backup, or a newer one")
        if value is not None and isinstance(column.type, UtcDateTime):
            value = datetime.fromisoformat(value)
        elif value is not None and isinstance(column.type, sa.LargeBinary):
            value = base64.b64decode(value)
        decoded[key] = value
    return decoded


def load_tables(conn: Connection, source: TableSource, revision: str, now: datetime,
                decide: Decide, force: bool) -> Loaded:
    refuse_unless_empty(conn, force)
    drop_schema(conn)
    upgrade_to(conn, revision)
    counts = {name: insert_rows(conn, metadata.tables[name], source[name]())
              for name in (table.name for table in metadata.sorted_tables) if name in source}
    upgrade_to(conn, "head")
    reset_sequences(conn)
    return Loaded(counts, requeue_in_flight(conn, now, decide))


class Replaced(NamedTuple):
    one: str
    many: str
    only: sa.ColumnElement[bool] | None = None  # the rows that count; None: all


# What a restore would throw away that someone made, by table. Rows that belong to one
# of these go with it (recipients, events, attempts, blob_refs, contact_emails,
# contact_terms, group_members, webhook_deliveries). Not counted: what Outbox keeps for
# itself (alerts, the relay governor, a relay's login state, rate-limit buckets, clock
# readings, the LDAP sync cursor, autocomplete ranks, uploads that expire unsent within
# hours), and the signing keys a database makes on first use (a web UI sign-in, mail
# sent): counting them would refuse every new install that was tried once.
REPLACED = {
    "messages": Replaced("message", "messages"),
    "contacts": Replaced("contact", "contacts"),
    "address_groups": Replaced("group", "groups"),
    "aliases": Replaced("alias", "aliases"),
    "api_keys": Replaced("API key", "API keys"),
    "ui_users": Replaced("UI user", "UI users"),
    "suppressions": Replaced("suppression", "suppressions"),
    "webhook_endpoints": Replaced("webhook", "webhooks"),
    "relay_auth": Replaced("relay with stored credentials", "relays with stored credentials",
                           sa.column("credentials").is_not(None)),
}


def refuse_unless_empty(conn: Connection, force: bool) -> None:
    held = [] if force else held_data(conn)
    if held:
        raise Conflict(f"the database already holds {', '.join(held)}: restoring replaces "
                       "them", hint="add --force to overwrite them with the backup, after "
                       "taking a backup of this database")


def held_data(conn: Connection) -> list[str]:
    """What the database holds that a restore replaces, as "3 messages", "1 contact"."""
    present = existing_columns(conn)
    held: list[str] = []
    for name, kind in REPLACED.items():
        if name not in present:  # an older schema
            continue
        query = select(func.count()).select_from(metadata.tables[name])
        if kind.only is not None:
            query = query.where(kind.only)
        count = int(conn.execute(query).scalar() or 0)
        if count:
            held.append(f"{count:,} {kind.one if count == 1 else kind.many}")
    return held


def drop_schema(conn: Connection) -> None:
    present = existing_columns(conn)
    for table in reversed(metadata.sorted_tables):
        if table.name in present:
            table.drop(conn)
    conn.execute(sa.text("DROP TABLE IF EXISTS alembic_version"))


def upgrade_to(conn: Connection, revision: str) -> None:
    from alembic import command

    from outbox.store.sql.store import alembic_config  # the store imports this module

    config = alembic_config()
    config.attributes["connection"] = conn
    command.upgrade(config, revision)


def insert_rows(conn: Connection, table: sa.Table, rows: Iterator[PortableRow]) -> int:
    count = 0
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(decode_row(table, row))
        if len(batch) >= INSERT_BATCH:
            count += _insert(conn, table, batch)
    return count + _insert(conn, table, batch)


def _insert(conn: Connection, table: sa.Table, batch: list[dict[str, Any]]) -> int:
    if not batch:
        return 0
    count = len(batch)
    conn.execute(insert(table), batch)
    batch.clear()
    return count


def reset_sequences(conn: Connection) -> None:
    """PostgreSQL: ids inserted explicitly leave their sequences behind; move them on."""
    if conn.dialect.name != "postgresql":
        return
    for table in metadata.sorted_tables:
        id_column = table.c.get("id")
        if id_column is None or not isinstance(id_column.type, sa.BigInteger | sa.Integer):
            continue
        conn.execute(sa.text(
            f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
            f"COALESCE(MAX(id), 1), MAX(id) IS NOT NULL) FROM {table.name}"))


def requeue_in_flight(conn: Connection, now: datetime, decide: Decide) -> tuple[str, ...]:
    """What was `sending` at backup time: its worker is not coming back."""
    m = messages
    query = (select(m.c.id, m.c.claimed_by, m.c.attempts, m.c.created_at, m.c.held_seconds)
             .where(m.c.status == MessageStatus.SENDING.value).order_by(m.c.id))
    found = conn.execute(query).all()
    apply_verdicts(conn, now, [(row.id, decide(abandoned_claim(row, Cause.RESTORED)))
                               for row in found])
    return tuple(row.id for row in found)
