"""Each relay's due mail that no worker has claimed: `MessageStore.stats(now)`'s
`due_by_relay`, what `outbox relay ls` and `outbox doctor` show of mail waiting for
a relay's room; and its `sending_by_relay`, mail a worker has taken.

A worker gives one relay at most a share of its concurrency (worker/relay_room.py), and
its claims skip the mail of a relay whose share is full. Mail for a slow relay then
waits `queued` (or `deferred`, due again), due but unclaimed, while the relay looks
healthy: this read is how an operator sees it. It walks every due message (the claim's
partial index on `due_at`) and its recipients, so it is for an operator's look, never
for a loop.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from sqlalchemy import Connection, distinct, func, select

from outbox.core.model import MessageStatus
from outbox.store.sql import queries as q
from outbox.store.tables import messages as m
from outbox.store.tables import recipients as r
from outbox.store.values import QueueStats, RelayDue


def stats_at(conn: Connection, now: datetime | None) -> QueueStats:
    """The queue's figures; with `now`, each relay's due mail and mail in flight as well."""
    stats = q.stats(conn)
    if now is None:
        return stats
    return replace(stats, due_by_relay=due_by_relay(conn, now),
                   sending_by_relay=sending_by_relay(conn))


def due_by_relay(conn: Connection, now: datetime) -> dict[str, RelayDue]:
    """By relay, the messages due by `now` (unclaimed: a claim clears `due_at`) with a
    recipient still to deliver through it, and the earliest `due_at` among them."""
    due = (select(r.c.relay, func.count(distinct(m.c.id)), func.min(m.c.due_at))
           .select_from(m.join(r, r.c.message_id == m.c.id))
           .where(m.c.due_at.isnot(None), m.c.due_at <= now, m.c.status.in_(q.WAITING),
                  r.c.status.in_(q.UNFINISHED))
           .group_by(r.c.relay))
    return {relay: RelayDue(count, oldest) for relay, count, oldest in conn.execute(due)}


def sending_by_relay(conn: Connection) -> dict[str, int]:
    """By relay, the messages a worker has taken (`sending`) with a recipient still to
    deliver through it: a relay whose first attempts are under way has none finished
    in the alerts window, and is not idle."""
    sending = (select(r.c.relay, func.count(distinct(m.c.id)))
               .select_from(m.join(r, r.c.message_id == m.c.id))
               .where(m.c.status == MessageStatus.SENDING.value,
                      r.c.status.in_(q.UNFINISHED))
               .group_by(r.c.relay))
    return {relay: count for relay, count in conn.execute(sending)}
