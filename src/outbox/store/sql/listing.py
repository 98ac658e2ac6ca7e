"""`list`: pages of messages, newest first, narrowed by a `MessageFilter`, with an
opaque keyset cursor (the last row's acceptance time and id).

A filter on recipients or relays is a subquery on `recipients` (indexed by
lower(address) and by relay), so a page costs the same however the queue grows;
the subject is a case-insensitive substring of the content's subject (every letter
folded, `sql.folding`).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ARRAY, Connection, Select, Text, any_, bindparam, func, select, tuple_

from outbox.core.model import MessageStatus
from outbox.errors import InputError
from outbox.store.sql.bound_lists import is_postgres
from outbox.store.sql.folding import folded
from outbox.store.sql.queries import hydrate
from outbox.store.tables import UtcDateTime, messages, recipients
from outbox.store.values import Message, MessageFilter, Page

# Up to 17 digits of microseconds (year 5138) and an id of up to 191 bytes: at most 400
# characters, the API's bound on `cursor`.
CURSOR_PATTERN = r"^[0-9]{1,17}_(?:[0-9a-f]{2}){1,191}$"
_CURSOR = re.compile(CURSOR_PATTERN)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

m = messages
r = recipients


def page(conn: Connection, status: MessageStatus | None, limit: int,
         after: tuple[datetime, str] | None, where: MessageFilter) -> Page:
    newest_first = (m.c.created_at.desc(), m.c.id.desc())
    query = select(m).limit(limit + 1)
    if status is None:
        query = query.order_by(*newest_first)
    elif is_postgres(conn):
        # Given `status = 'queued'`, PostgreSQL read the newest messages of any status
        # (the index on acceptance time) and skipped the others: with a million queued
        # behind the newest 3,600 sent, the first page took 4 ms instead of 0.3
        # (bench/scale.py), and longer with every newer message of another status.
        # Compared with `= ANY` of a one-item list, the status is no constant to the
        # planner: the order starts with it, and only the index on (status, created_at,
        # id) gives that order without sorting every match.
        query = query.where(m.c.status == any_(bindparam("l_status", [status.value],
                                                         type_=ARRAY(Text()))))
        query = query.order_by(m.c.status.desc(), *newest_first)
    else:  # SQLite already reads the index on (status, created_at, id)
        query = query.where(m.c.status == status.value).order_by(*newest_first)
    if after is not None:
        at = bindparam("after_at", after[0], type_=UtcDateTime())
        query = query.where(tuple_(m.c.created_at, m.c.id) < tuple_(at, after[1]))
    found = conn.execute(narrow(query, where)).all()
    chosen = hydrate(conn, found[:limit])
    return Page(tuple(chosen), encode_cursor(chosen[-1]) if len(found) > limit else None)


def count(conn: Connection, status: MessageStatus | None, where: MessageFilter) -> int:
    query = select(func.count()).select_from(m)
    if status is not None:
        query = query.where(m.c.status == status.value)
    return int(conn.execute(narrow(query, where)).scalar_one())


def narrow(query: Select[Any], where: MessageFilter) -> Select[Any]:
    """`query` over messages, restricted to those `where` matches."""
    if where.recipient is not None:
        query = query.where(m.c.id.in_(select(r.c.message_id).where(
            func.lower(r.c.address) == where.recipient.lower())))
    if where.relay is not None:
        query = query.where(m.c.id.in_(select(r.c.message_id).where(r.c.relay == where.relay)))
    if where.since is not None:
        query = query.where(m.c.created_at >= bindparam("since", where.since,
                                                        type_=UtcDateTime()))
    if where.until is not None:
        query = query.where(m.c.created_at < bindparam("until", where.until,
                                                       type_=UtcDateTime()))
    if where.subject:
        subject = m.c.content["subject"].as_string()
        query = query.where(folded(subject).contains(where.subject.lower(), autoescape=True))
    return query


def encode_cursor(message: Message) -> str:
    """`<microseconds since 1970 UTC>_<the id's UTF-8 in hex>`: every string of that form
    (`CURSOR_PATTERN`) is a position in the keyset, so the API can publish the exact form."""
    micros = max((message.created_at - _EPOCH) // timedelta(microseconds=1), 0)
    return f"{micros}_{message.id.encode().hex()}"


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    if not _CURSOR.fullmatch(cursor):
        raise InputError("the cursor is not valid; use next_cursor from a previous page",
                         field="cursor")
    micros, _, id = cursor.partition("_")
    # Any bytes are a position: an id that is not UTF-8 still sorts where its text would.
    return _EPOCH + timedelta(microseconds=int(micros)), bytes.fromhex(id).decode(
        errors="replace")
