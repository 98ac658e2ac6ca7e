"""A new message's recipients, written in bulk inside the transaction that stores it.

SQLAlchemy's executemany processes every parameter of every row in Python: about 5 ms
for a 1,000-recipient message, on SQLite's one writer thread (where every other submit
waits) or, on PostgreSQL, on the event loop itself (issue 17). SQLite gets plain tuples
through the driver's executemany; PostgreSQL one array per column and `unnest`, so
the statement's text is the same for any number of recipients, as sql/webhook_events.py
does for events.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

from sqlalchemy import Connection, Integer, Text, TextClause, text

from outbox.core.model import RecipientStatus
from outbox.store.sql.bound_lists import is_postgres
from outbox.store.sql.driver_rows import (
    array_casts,
    array_params,
    arrays,
    prefixed,
    sqlite_many,
    where_clause,
)
from outbox.store.sql.turns import in_turns
from outbox.store.values import NewMessage

COLUMNS = (("message_id", Text()), ("position", Integer()), ("address", Text()),
            ("kind", Text()), ("relay", Text()), ("status", Text()), ("provenance", Text()))
_NAMES = ", ".join(name for name, _ in COLUMNS)
_SQLITE = f"INSERT INTO recipients ({_NAMES}) VALUES ({', '.join('?' for _ in COLUMNS)})"
_PENDING = RecipientStatus.PENDING.value


def rows_of(chosen: Sequence[NewMessage]) -> list[tuple[object, ...]]:
    """Every recipient of `chosen`, pending, numbered in submission order: tuples in
    the order of COLUMNS."""
    return [(m.id, position, r.address, r.kind, r.relay, _PENDING, r.provenance)
            for m in chosen for position, r in enumerate(in_turns(m.recipients))]


def insert_recipients(conn: Connection, chosen: Sequence[NewMessage]) -> None:
    """Every recipient of `chosen`, pending, numbered in submission order."""
    found = rows_of(chosen)
    if not found:
        return
    if is_postgres(conn):
        conn.execute(_postgres(), arrays(COLUMNS, found))
    else:
        sqlite_many(conn, _SQLITE, found)


def insert_from_arrays(prefix: str = "", where: str = "") -> str:
    """PostgreSQL's INSERT of the rows given as arrays (parameters named
    `prefix` + column, `driver_rows.prefixed`), only `where` that condition holds if
    one is given; called when a statement is built."""
    return (f"INSERT INTO recipients ({_NAMES}) SELECT * FROM unnest("
            f"{array_casts(prefixed(prefix, COLUMNS))}){where_clause(where)}")


@cache
def _postgres() -> TextClause:
    """Built on first use (driver_rows.array_casts)."""
    return text(insert_from_arrays()).bindparams(*array_params(COLUMNS))
