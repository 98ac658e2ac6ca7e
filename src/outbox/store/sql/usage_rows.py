"""Address usage rows (autocomplete's ranking), written in one statement whatever the
number of addresses: a 1,000-recipient message counts 1,000 of them, in transactions of
200, on SQLite's one writer or on PostgreSQL's event loop (issue 17). SQLAlchemy's
executemany processed every parameter of every row in Python.

SQLite (`write_usage`): the ranks were computed from the rows read first, in the same
transaction of its one writer; plain tuples go through the driver's executemany, the
time converted once, by the column's own bind processor.

PostgreSQL (`add_usage`): nothing is read. One array per column goes to an upsert
that adds the new uses to the stored rank itself (`core.contacts.add_use`, written in
SQL), so an address another writer counts meanwhile keeps both counts, and copies the
result to the search terms of the contacts that have the address. The read it
replaces, `address_key = ANY($1) FOR UPDATE`, kept the generic plan PostgreSQL caches
after five runs: planned while the table was small, a sequential scan comparing each
row with every key, until autovacuum next analysed the table. In bench/abuse.py's
first 20 s each read of 200 addresses took the server 5 to 66 ms (auto_explain), more as
the table grew; bench/big_message_cost.py measures the backend's CPU per step.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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

from outbox.core.contacts import add_use, use_weight
from outbox.store.sql.driver_rows import array_casts, array_params, sqlite_many, stored_form
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
    """SQLite: write rows whose ranks were computed from the rows read before."""
    if not usage:
        return
    process = stored_form(conn, address_usage.c.last_used_at)
    stored = {at: process(at) for at in {at for _, _, at, _ in usage}}
    sqlite_many(conn, _SQLITE, [(key, count, stored[at], rank)
                                for key, count, at, rank in usage])


def add_usage(conn: Connection, counts: Mapping[str, int], now: datetime) -> None:
    """PostgreSQL: add `counts[key]` uses at `now` to each address, and copy its new
    rank to the search terms of the contacts that have it, in one statement. Each row
    starts from the rank of its new uses alone, computed here as on SQLite."""
    keys = sorted(counts)  # every writer locks address rows in the same order
    weight = use_weight(now)
    conn.execute(_postgres(), {
        "keys": keys, "counts": [counts[key] for key in keys], "ats": [now] * len(keys),
        "ranks": [add_use(None, weight, counts[key]) for key in keys]})


@cache
def _postgres() -> TextClause:
    # log2(2**old + 2**new) as add_use computes it: the larger plus log2(1 + 2**-gap).
    # Past a gap of 60 that term is under a float's precision, and power() would fail
    # with an underflow where Python gives 0.
    return text(f"""
WITH counted AS (
    INSERT INTO address_usage ({_NAMES})
    SELECT * FROM unnest({array_casts(_ARRAYS)})
    ON CONFLICT (address_key) DO UPDATE SET
        use_count = address_usage.use_count + excluded.use_count,
        last_used_at = GREATEST(address_usage.last_used_at, excluded.last_used_at),
        rank = GREATEST(address_usage.rank, excluded.rank) + CASE
            WHEN abs(address_usage.rank - excluded.rank) > 60 THEN 0
            ELSE ln(1 + power(2, -abs(address_usage.rank - excluded.rank))) / ln(2) END
    RETURNING address_key, rank)
UPDATE contact_terms SET rank = counted.rank
FROM counted WHERE contact_terms.address_key = counted.address_key""").bindparams(
        *array_params(_ARRAYS))
