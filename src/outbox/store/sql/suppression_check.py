"""Which addresses are on the suppression list: read at submit, inside the transaction
that stores the message (sql/queries.py), and by `SqlSuppressions.find_suppressed`."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, or_, select

from outbox.core.suppression import Suppression, SuppressionReason, suppression_key
from outbox.store.sql.bound_lists import bound_list, in_bound_list, is_postgres
from outbox.store.tables_suppressions import suppressions as s


def find_suppressed(conn: Connection, addresses: Collection[str], now: datetime
                    ) -> dict[str, Suppression]:
    """The entries in force at `now` for these addresses, by `suppression_key`."""
    keys = sorted({suppression_key(a) for a in addresses})
    if not keys:
        return {}
    query = _FIND[is_postgres(conn)]
    given = {"keys": bound_list(conn, keys), "now": now}
    return {row.address: entry(row) for row in conn.execute(query, given)}


# Built once per backend, so SQLAlchemy compiles each once (sql/bound_lists.py).
_FIND = {postgres: select(s).where(in_bound_list(s.c.address, "keys", postgres=postgres),
                                   or_(s.c.expires_at.is_(None),
                                       s.c.expires_at > bindparam("now")))
         for postgres in (False, True)}


def entry(row: Any) -> Suppression:
    return Suppression(row.address, SuppressionReason(row.reason), row.created_at,
                       row.detail, row.source_message, row.expires_at)
