"""Which addresses are on the suppression list: read at submit, inside the transaction
that stores the message (sql/queries.py), and by `SqlSuppressions.find_suppressed`."""

from __future__ import annotations

import json
from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import ARRAY, Connection, Text, any_, bindparam, column, func, or_, select

from outbox.core.suppression import Suppression, SuppressionReason, suppression_key
from outbox.store.tables_suppressions import suppressions as s


def find_suppressed(conn: Connection, addresses: Collection[str], now: datetime
                    ) -> dict[str, Suppression]:
    """The entries in force at `now` for these addresses, by `suppression_key`."""
    keys = sorted({suppression_key(a) for a in addresses})
    if not keys:
        return {}
    postgres = conn.dialect.name == "postgresql"
    query = _ANY_OF_ARRAY if postgres else _IN_JSON_ARRAY
    given = {"keys": keys if postgres else json.dumps(keys), "now": now}
    return {row.address: entry(row) for row in conn.execute(query, given)}


# The keys go as one parameter, whatever their number: a list of 1,000 bound one by one
# cost several milliseconds of Python per submit (issue 17); the statements are built
# once, so SQLAlchemy compiles each once.
_IN_FORCE = or_(s.c.expires_at.is_(None), s.c.expires_at > bindparam("now"))
_IN_JSON_ARRAY = select(s).where(  # SQLite
    s.c.address.in_(select(column("value")).select_from(func.json_each(bindparam("keys")))),
    _IN_FORCE)
_ANY_OF_ARRAY = select(s).where(  # PostgreSQL
    s.c.address == any_(bindparam("keys", type_=ARRAY(Text()))), _IN_FORCE)


def entry(row: Any) -> Suppression:
    return Suppression(row.address, SuppressionReason(row.reason), row.created_at,
                       row.detail, row.source_message, row.expires_at)
