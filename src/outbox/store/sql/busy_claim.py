"""A claim's pick of due mail while some relays are busy (worker/relay_room.py): each
other relay's due mail read on its own index range, not found by walking past the
busy relays' mail.

The claim's index orders all due mail by `due_at`; a claim that skipped busy relays
walked it from the oldest, looking at each message's recipients, until it had found
enough mail for other relays. A slow relay with a backlog was walked past at every
claim: with 100,000 of its messages due, 85-103 ms a claim on SQLite (inside the write
turn every submit waits for) and 9 ms on PostgreSQL, growing with the backlog
(bench/busy_claim.py).

A message whose recipients all go through one relay names it (`messages.only_relay`).
The relays with waiting mail are read off ix_messages_only_relay_due_at one seek each,
and each relay that is not busy gives its oldest due mail, `limit` at most, on the same
index. Mail with recipients on several relays (`only_relay` NULL) is still found as
before, by its recipients, and so is a busy relay's only when its message also has
mail for another.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, bindparam, func, or_, select

from outbox.store.sql.bound_lists import bound_list, in_bound_list
from outbox.store.sql.queries import CLAIM_LIMIT, DUE, UNFINISHED
from outbox.store.tables import messages as m
from outbox.store.tables import recipients

_WAITING = m.c.due_at.isnot(None)  # the index's own condition, so that it is used
_FIRST_RELAY = select(func.min(m.c.only_relay)).where(_WAITING, m.c.only_relay.isnot(None))
_NEXT_RELAY = select(func.min(m.c.only_relay)).where(_WAITING,
                                                     m.c.only_relay > bindparam("b_after"))


def _beyond_busy(postgres: bool) -> ColumnElement[bool]:
    """The message has a pending recipient on a relay not in the bound list `c_busy`."""
    pending = select(recipients.c.message_id).where(
        recipients.c.message_id == m.c.id,
        or_(*(recipients.c.status == status for status in UNFINISHED)),
        ~in_bound_list(recipients.c.relay, "c_busy", postgres=postgres))
    # PostgreSQL made this a join with every pending recipient: 7.6 ms a claim with
    # 100,000 of a busy relay's (bench/busy_claim.py). OFFSET 0, which it does not pull
    # up, keeps it a look at each message the index gives, oldest first, until enough.
    return pending.offset(0).exists() if postgres else pending.exists()


def _picks(*conditions: Any, postgres: bool) -> Select[Any]:
    query = (select(m.c.id, m.c.due_at).where(DUE, *conditions).order_by(m.c.due_at)
             .limit(CLAIM_LIMIT))
    # Rows another worker is claiming are left to it, as the claim without busy relays
    # does; those locked here and not taken are free again at this commit.
    return query.with_for_update(skip_locked=True) if postgres else query


_OF_RELAY = {postgres: _picks(m.c.only_relay == bindparam("b_relay"), postgres=postgres)
             for postgres in (False, True)}
_MIXED = {postgres: _picks(m.c.only_relay.is_(None), _beyond_busy(postgres),
                           postgres=postgres)
          for postgres in (False, True)}


def relays_waiting(conn: Connection) -> Iterator[str]:
    """Each relay named by a waiting message (due now or later), in order."""
    relay = conn.execute(_FIRST_RELAY).scalar()
    while relay is not None:
        yield relay
        relay = conn.execute(_NEXT_RELAY, {"b_after": relay}).scalar()


def due_beyond_busy(conn: Connection, now: datetime, limit: int, busy: Collection[str],
                    *, postgres: bool) -> list[tuple[str, datetime]]:
    """Up to `limit` due messages (id, due_at) with mail for a relay not in `busy`,
    oldest due first."""
    found: list[tuple[str, datetime]] = []
    for relay in list(relays_waiting(conn)):
        if relay not in busy:
            found += [(row[0], row[1]) for row in conn.execute(_OF_RELAY[postgres], {
                "b_relay": relay, "c_now": now, "c_limit": limit})]
    found += [(row[0], row[1]) for row in conn.execute(_MIXED[postgres], {
        "c_now": now, "c_limit": limit, "c_busy": bound_list(conn, sorted(busy))})]
    return sorted(found, key=lambda pick: pick[1])[:limit]
