"""`SqlSuppressions`: `store.base.SuppressionStore` over a `Runner`: the suppression
list, and a bounce's recipient update, event and suppression in one transaction."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import Connection, delete, func, select, update

from outbox.core.suppression import Suppression, suppression_key
from outbox.store.base_suppressions import BounceRecord
from outbox.store.sql import queries
from outbox.store.sql.runner import Runner
from outbox.store.sql.suppression_check import entry, find_suppressed
from outbox.store.sql.upsert import upsert
from outbox.store.tables import recipients
from outbox.store.tables_suppressions import suppressions

s = suppressions


def add_suppression(conn: Connection, entry: Suppression) -> bool:
    address = suppression_key(entry.address)
    found = conn.execute(select(s.c.expires_at).where(s.c.address == address)).first()
    values = {"address": address, "reason": entry.reason.value, "detail": entry.detail,
              "source_message": entry.source_message, "created_at": entry.created_at,
              "expires_at": entry.expires_at}
    stmt = upsert(conn, s).values(**values)
    conn.execute(stmt.on_conflict_do_update(
        index_elements=["address"],
        set_={name: getattr(stmt.excluded, name) for name in values if name != "address"}))
    return found is None or (found.expires_at is not None
                             and found.expires_at <= entry.created_at)


def remove_suppression(conn: Connection, address: str) -> bool:
    removed = conn.execute(delete(s).where(s.c.address == suppression_key(address)))
    return removed.rowcount > 0


def list_suppressions(conn: Connection, limit: int, after: str | None
                      ) -> tuple[Suppression, ...]:
    query = select(s).order_by(s.c.address).limit(limit)
    if after:
        query = query.where(s.c.address > suppression_key(after))
    return tuple(entry(row) for row in conn.execute(query))


def record_bounce(conn: Connection, bounce: BounceRecord) -> bool:
    where = (recipients.c.message_id == bounce.message_id,
             func.lower(recipients.c.address) == suppression_key(bounce.recipient))
    found = conn.execute(select(recipients.c.address).where(*where)).first()
    if found is None:
        return False
    if bounce.status is not None:
        conn.execute(update(recipients).where(*where).values(
            status=bounce.status.value, reply_code=bounce.reply_code,
            enhanced_code=bounce.enhanced_code, reply=bounce.reply, guidance=bounce.guidance))
    queries.insert_events(conn, [(bounce.message_id, bounce.event)])
    if bounce.suppression is not None:
        add_suppression(conn, bounce.suppression)
    return True


class SqlSuppressions:
    """The suppression verbs over one runner."""

    def __init__(self, runner: Runner) -> None:
        self._run = runner

    async def add_suppression(self, entry: Suppression) -> bool:
        return await self._run.write(add_suppression, entry)

    async def remove_suppression(self, address: str) -> bool:
        return await self._run.write(remove_suppression, address)

    async def list_suppressions(self, limit: int, after: str | None = None
                                ) -> tuple[Suppression, ...]:
        return await self._run.read(list_suppressions, limit, after)

    async def find_suppressed(self, addresses: Collection[str], now: datetime
                              ) -> dict[str, Suppression]:
        return await self._run.read(find_suppressed, addresses, now)

    async def record_bounce(self, bounce: BounceRecord) -> bool:
        return await self._run.write(record_bounce, bounce)
