"""New messages' rows, written in bulk inside the transaction that stores them.

SQLAlchemy's executemany processed each of the 17 parameters of each row in Python (44 µs
a message on SQLite's one writer thread, in groups of 20), and on PostgreSQL each row was
then a statement of its own for the server to bind and run. As sql/recipient_rows.py
writes their recipients: SQLite gets plain tuples through the driver's executemany,
PostgreSQL one array per column and `unnest`. The two JSON columns go as text, as
SQLAlchemy's JSON type would store them, and PostgreSQL casts them back.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from functools import cache
from typing import Any

from sqlalchemy import Connection, Float, Integer, Text, TextClause, text

from outbox.core.model import MessageStatus
from outbox.store import rows
from outbox.store.sql.driver_rows import TIME as _TIME
from outbox.store.sql.driver_rows import (
    array_casts,
    array_params,
    prefixed,
    where_clause,
    write_rows,
)
from outbox.store.values import NewMessage

COLUMNS = (("id", Text()), ("message_id", Text()), ("status", Text()), ("sender", Text()),
            ("content", Text()), ("metadata", Text()), ("attempts", Integer()),
            ("created_at", _TIME), ("updated_at", _TIME), ("due_at", _TIME),
            ("held_since", _TIME), ("held_seconds", Float()), ("hold_reason", Text()),
            ("resent_from", Text()), ("owner", Text()), ("idempotency_key", Text()),
            ("request_hash", Text()), ("only_relay", Text()))
_JSON = ("content", "metadata")
_NAMES = ", ".join(name for name, _ in COLUMNS)
_SQLITE = f"INSERT INTO messages ({_NAMES}) VALUES ({', '.join('?' for _ in COLUMNS)})"


def insert_messages(conn: Connection, chosen: Sequence[NewMessage]) -> None:
    write_rows(conn, [row(message) for message in chosen], _SQLITE, _postgres, COLUMNS)


def row(message: NewMessage) -> tuple[Any, ...]:
    at = message.accepted_at
    queued = message.status is MessageStatus.QUEUED
    claim = message.idempotency
    return (message.id, message.message_id, message.status.value, message.sender,
            json.dumps(rows.content_json(message.content)), json.dumps(message.metadata), 0,
            at, at, at if queued else None, None if queued else at, 0.0,
            message.hold.reason if message.hold else "", message.resent_from,
            rows.owner_of(message), claim.key if claim else None,
            claim.request_hash if claim else None, only_relay(r.relay for r in message.recipients))


def only_relay(relays: Iterable[str]) -> str | None:
    """The relay of every recipient; None when they go through more than one."""
    found = set(relays)
    return found.pop() if len(found) == 1 else None


def insert_from_arrays(prefix: str = "", where: str = "") -> str:
    """PostgreSQL's INSERT of the rows given as arrays (parameters named
    `prefix` + column, `driver_rows.prefixed`), only `where` that condition holds if
    one is given; called when a statement is built."""
    columns = prefixed(prefix, COLUMNS)
    values = ", ".join(f"CAST(u.{name} AS JSON)" if name in _JSON else f"u.{name}"
                       for name, _ in COLUMNS)
    return (f"INSERT INTO messages ({_NAMES}) SELECT {values} FROM unnest("
            f"{array_casts(columns)}) AS u({_NAMES}){where_clause(where)}")


@cache
def _postgres() -> TextClause:
    """Built on first use (driver_rows.array_casts)."""
    return text(insert_from_arrays()).bindparams(*array_params(COLUMNS))
