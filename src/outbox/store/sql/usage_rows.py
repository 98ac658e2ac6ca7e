"""Address usage rows (autocomplete's ranking), written in one statement whatever the
number of addresses: a 1,000-recipient message counts 1,000 of them, in transactions of
200, on SQLite's one writer or on PostgreSQL's event loop (issue 17).

Fresh and known addresses alike go through one INSERT ... ON CONFLICT that adds the
count: SQLite gets plain tuples through the driver's executemany (the time converted
once, by the column's own bind processor), PostgreSQL one array per column and
`unnest`. SQLAlchemy's executemany processed every parameter of every row in Python.
An address another writer adds meanwhile keeps both counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import cache

from sqlalchemy import (
    Connection,
    DateTime,
    Float,
    Integer,
    Text,
    TextClause,
    text,
)

from outbox.store.sql.bound_lists import is_postgres
from outbox.store.sql.driver_rows import array_casts, array_params, stored_form
from outbox.store.tables import address_usage

Usage = tuple[str, int, datetime, float]  # address key, uses to add, last used at, new rank

_NAMES = "address_key, use_count, last_used_at, rank"
_ARRAYS = (("keys", Text()), ("counts", Integer()), ("ats", DateTime(timezone=True)),
           ("ranks", Float()))
_SQLITE = (f"INSERT INTO address_usage ({_NAMES}) VALUES (?, ?, ?, ?) "
           "ON CONFLICT (address_key) DO UPDATE SET "
           "use_count = address_usage.use_count + excluded.use_count, "
           "last_used_at = max(address_usage.last_used_at, excluded.last_used_at), "
           "rank = excluded.rank")


def write_usage(conn: Connection, usage: Sequence[Usage]) -> None:
    if not usage:
        return
    if is_postgres(conn):
        keys, counts, ats, ranks = (list(column) for column in zip(*usage, strict=True))
        conn.execute(_postgres(), {"keys": keys, "counts": counts, "ats": ats, "ranks": ranks})
        return
    process = stored_form(conn, address_usage.c.last_used_at)
    stored = {at: process(at) for at in {at for _, _, at, _ in usage}}
    conn.exec_driver_sql(_SQLITE, [(key, count, stored[at], rank)
                                   for key, count, at, rank in usage])


@cache
def _postgres() -> TextClause:
    return text(f"""
INSERT INTO address_usage ({_NAMES})
SELECT * FROM unnest({array_casts(_ARRAYS)})
ON CONFLICT (address_key) DO UPDATE SET
    use_count = address_usage.use_count + excluded.use_count,
    last_used_at = GREATEST(address_usage.last_used_at, excluded.last_used_at),
    rank = excluded.rank""").bindparams(*array_params(_ARRAYS))
