"""Which addresses are on the suppression list: read at submit, inside the transaction
that stores the message (sql/queries.py), and by `SqlSuppressions.find_suppressed`."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, or_, select

from outbox.core.suppression import Suppression, SuppressionReason, suppression_key
from outbox.store.tables_suppressions import suppressions as s

_FIND_CHUNK = 500  # addresses per IN (...) list


def find_suppressed(conn: Connection, addresses: Collection[str], now: datetime
                    ) -> dict[str, Suppression]:
    """The entries in force at `now` for these addresses, by `suppression_key`."""
    keys = sorted({suppression_key(a) for a in addresses})
    found: dict[str, Suppression] = {}
    for start in range(0, len(keys), _FIND_CHUNK):
        query = select(s).where(s.c.address.in_(keys[start:start + _FIND_CHUNK]),
                                or_(s.c.expires_at.is_(None), s.c.expires_at > now))
        found.update((row.address, entry(row)) for row in conn.execute(query))
    return found


def entry(row: Any) -> Suppression:
    return Suppression(row.address, SuppressionReason(row.reason), row.created_at,
                       row.detail, row.source_message, row.expires_at)
