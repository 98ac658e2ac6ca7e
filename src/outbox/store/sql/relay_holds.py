"""A relay's waiting mail held, and released again, a chunk per transaction.

A relay whose login fails holds all its waiting mail (`relay_auth.hold_for_relay`); new
credentials, or a login that works again, release it. Behind a backlog of 100,000 that
is 100,000 messages and events: in one transaction it would keep SQLite's one writer,
and every submit with it, for seconds (issue 17: big work never holds the writer). So a
transaction takes at most CHUNK messages, and the caller takes the next chunk while the
relay's state still asks for it (`relay_auth.hold_more`, `relay_auth.release_more`).

Each chunk looks through the waiting (or held) mail from the start again: what it holds
(releases) leaves that status, but the mail of other relays stays and is read again. So
a few thousand messages of one relay behind a million of another's cost a read of that
million per chunk: bounded by the queue, not constant."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Connection, Float, Text, TextClause, exists, select, text, update

from outbox.core.model import Event, EventType, MessageStatus
from outbox.store import rows
from outbox.store.sql.driver_rows import TIME as _TIME
from outbox.store.sql.driver_rows import array_params, from_arrays, write_rows
from outbox.store.sql.queries import HELD, UNFINISHED, WAITING, insert_events
from outbox.store.tables import messages, recipients

m = messages

CHUNK = 1000  # messages held or released per transaction

# Released in one statement per chunk (sql/driver_rows.py): one UPDATE per message, as
# an executemany, cost PostgreSQL a statement of its own to bind and run for each.
_RELEASE = (("due_at", _TIME), ("updated_at", _TIME), ("held_seconds", Float()),
            ("id", Text()))
_RELEASE_SET = ("status = '{queued}', due_at = {0}, updated_at = {1}, held_seconds = {2}, "
                "held_since = NULL, hold_reason = '', held_for_relay = NULL")
_QUEUED = MessageStatus.QUEUED.value
_RELEASE_SQLITE = (f"UPDATE messages SET {_RELEASE_SET.format('?', '?', '?', queued=_QUEUED)} "
                   f"WHERE id = ? AND status = '{HELD}'")


@cache
def _release_postgres() -> TextClause:
    set_ = _RELEASE_SET.format(*(f"u.{name}" for name, _ in _RELEASE[:3]), queued=_QUEUED)
    return text(f"UPDATE messages SET {set_} FROM {from_arrays(_RELEASE)} "
                f"WHERE messages.id = u.id AND messages.status = '{HELD}'"
                ).bindparams(*array_params(_RELEASE))


def _has_unfinished_on(relay: str) -> Any:
    """The message has a recipient still to deliver through `relay`, found through the
    recipients' primary key. `relay || ''` keeps SQLite from the relay's own index
    (https://sqlite.org/optoverview.html, "disqualifying WHERE clause terms"): through it,
    the check scanned every recipient on the relay for each message, and holding 20,000
    messages took 28 s (bench/hold_release.py)."""
    return exists().where(recipients.c.message_id == m.c.id,
                          (recipients.c.relay + "") == relay,
                          recipients.c.status.in_(UNFINISHED))


def hold_relay(conn: Connection, relay: str, now: datetime, reason: str, event: Event) -> int:
    """Up to CHUNK waiting messages with a recipient on `relay` held, the event added to
    each; how many. The status is asked again outside the subquery: on PostgreSQL a
    message claimed meanwhile is then left to its attempt, which holds it itself."""
    chunk = select(m.c.id).where(m.c.status.in_(WAITING), _has_unfinished_on(relay)).limit(CHUNK)
    stmt = (update(m).where(m.c.id.in_(chunk), m.c.status.in_(WAITING))
            .values(status=HELD, due_at=None, updated_at=now, held_since=now,
                    hold_reason=reason, held_for_relay=relay)
            .returning(m.c.id))
    held = conn.execute(stmt).scalars().all()
    insert_events(conn, [(id, event) for id in held])
    return len(held)


def release_relay(conn: Connection, relay: str, now: datetime) -> int:
    """Up to CHUNK messages held for `relay`'s sake (not by policy) back in the queue,
    due now, with the time they were held counted; how many."""
    query = (select(m.c.id, m.c.held_since, m.c.held_seconds)
             .where(m.c.status == HELD, m.c.held_for_relay == relay)
             .limit(CHUNK).with_for_update())
    held = conn.execute(query).all()
    if held:
        found = [(now, now, rows.held_seconds_after(r, now), r.id) for r in held]
        write_rows(conn, found, _RELEASE_SQLITE, _release_postgres, _RELEASE)
        released = Event(now, EventType.RELEASED, detail=f"relay {relay} is usable again")
        insert_events(conn, [(r.id, released) for r in held])
    return len(held)


def bring_forward(conn: Connection, relay: str, now: datetime, until: datetime) -> int:
    """Up to CHUNK deferred messages with a recipient still to deliver through `relay`,
    due after `now` and by `until`, due now; how many."""
    deferred = MessageStatus.DEFERRED.value
    chunk = (select(m.c.id).where(m.c.status == deferred, m.c.due_at > now,
                                  m.c.due_at <= until, _has_unfinished_on(relay))
             .limit(CHUNK))
    stmt = (update(m).where(m.c.id.in_(chunk), m.c.status == deferred)
            .values(due_at=now, updated_at=now).returning(m.c.id))
    return len(conn.execute(stmt).scalars().all())


async def in_chunks(first: int, next_chunk: Callable[[], Awaitable[int]]) -> int:
    """`first` (how many the first transaction held or released) plus each next chunk's,
    until one finds none: the callers' loop over the transactions above."""
    total = step = first
    while step:
        step = await next_chunk()
        total += step
    return total
