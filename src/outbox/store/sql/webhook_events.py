"""Events, and a webhook delivery for each enabled endpoint subscribed to them, in
the transaction that records them (`queries.insert_events` calls this for every
verb that records events), so an event is never lost across a crash.

The cost on the hot path: an event no endpoint can subscribe to (claimed,
attempt, alert) costs nothing more; PostgreSQL inserts a batch's events in one
statement, with their deliveries for the others (the subscriptions joined in the
database, and one statement text for any number of events), and SQLite,
in-process and the single writer, reads the enabled endpoints first (about 5 µs)
and asks for the new events' ids only when one of them subscribes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

from sqlalchemy import (
    Connection,
    DateTime,
    Integer,
    Text,
    TextClause,
    insert,
    text,
)

from outbox.core.webhooks import WEBHOOK_EVENTS
from outbox.store.sql.driver_rows import (
    Columns,
    array_casts,
    array_params,
    prefixed,
    sqlite_many,
    stored_form,
    utc,
    where_clause,
)
from outbox.store.tables import events
from outbox.store.tables_webhooks import webhook_deliveries
from outbox.store.webhook_values import PENDING

SUBSCRIBABLE = frozenset(WEBHOOK_EVENTS)


def insert_events(conn: Connection, values: Sequence[Mapping[str, Any]]) -> None:
    """Insert event rows (`rows.event_values`) and the deliveries they cause."""
    if not values:
        return
    subscribable = not SUBSCRIBABLE.isdisjoint(v["type"] for v in values)
    if conn.dialect.name == "postgresql":
        _as_arrays(conn, values, deliver=subscribable)
    elif subscribable:
        _insert_then_deliver(conn, values)
    else:
        _insert_plain(conn, values)


# PostgreSQL: the events come as arrays, so the statement's text is the same for any
# number of events (prepared once per connection, compiled once). What events share (a
# relay-wide deferral gives 1,000 recipients the same message, time, reply and detail)
# goes once, as a "shape"; each event is its recipient and the number of its shape.
# asyncpg checks every element of every array it encodes: ten arrays of 1,000 cost
# 5 ms of the event loop here, two arrays 1 ms (issue 17).
SHAPE = (("message_id", Text()), ("at", DateTime(timezone=True)), ("type", Text()),
          ("attempt", Integer()), ("reply_code", Integer()), ("enhanced_code", Text()),
          ("reply", Text()), ("guidance", Text()), ("detail", Text()))
EACH = (("recipient", Text()), ("shape", Integer()))
EVENT_COLUMNS = ("message_id", "at", "type", "attempt", "recipient", "reply_code",
                  "enhanced_code", "reply", "guidance", "detail")  # as SQLite's rows below


def _shapes(prefix: str) -> str:
    shape = ", ".join(name for name, _ in SHAPE)
    return (f"shapes AS (SELECT * FROM unnest({array_casts(prefixed(prefix, SHAPE))}) "
            f"WITH ORDINALITY AS s({shape}, n))")


def _inserted(prefix: str, where: str = "") -> str:
    picked = ", ".join(f"e.{name}" if name == "recipient" else f"s.{name}"
                       for name in EVENT_COLUMNS)
    return f"""
INSERT INTO events ({", ".join(EVENT_COLUMNS)})
SELECT {picked}
FROM unnest({array_casts(prefixed(prefix, EACH))}) WITH ORDINALITY AS e(recipient, shape, position)
JOIN shapes s ON s.n = e.shape{where_clause(where)}
ORDER BY e.position"""


def delivering(prefix: str = "", where: str = "") -> tuple[str, str]:
    """PostgreSQL: the common table expressions that insert the events given as arrays
    (parameters named `prefix` + the names in SHAPE and EACH, as `shape_arrays` gives
    them), only `where` that condition holds if one is given, and the statement that
    follows them with one delivery per subscribed endpoint; called when a statement is
    built (driver_rows.array_casts)."""
    added = f"added AS ({_inserted(prefix, where)}\n    RETURNING id, type, at)"
    return (f"{_shapes(prefix)},\n{added}",
            f"""
INSERT INTO webhook_deliveries (endpoint_id, event_id, event_type, created_at, status, next_at)
SELECT e.id, added.id, added.type, added.at, '{PENDING}', added.at
FROM added JOIN webhook_endpoints e
  ON e.disabled_at IS NULL AND CAST(e.events AS jsonb) @> jsonb_build_array(added.type)""")


@cache
def _events_from_arrays(deliver: bool) -> TextClause:
    """The statement, built on first use: the events, and if `deliver`, one delivery per
    subscribed endpoint."""
    if deliver:
        ctes, deliveries = delivering()
        statement = f"WITH {ctes}{deliveries}"
    else:
        statement = f"WITH {_shapes('')}{_inserted('')}"
    return text(statement).bindparams(*array_params(array_columns()))


def _as_arrays(conn: Connection, values: Sequence[Mapping[str, Any]], *, deliver: bool
               ) -> None:
    """INSERT the events, and if `deliver`, RETURNING them into an INSERT of one delivery
    per subscribed endpoint: one statement, eleven array parameters whatever the number
    of events. (An event no endpoint can subscribe to, such as a claim's, costs no look
    at the endpoints.)"""
    conn.execute(_events_from_arrays(deliver), shape_arrays(values))


def array_columns(prefix: str = "") -> Columns:
    """The columns of `shape_arrays(..., prefix)`, for `driver_rows.array_params`."""
    return prefixed(prefix, (*SHAPE, *EACH))


def shape_arrays(values: Sequence[Mapping[str, Any]], prefix: str = "") -> dict[str, list[Any]]:
    """The parameters of the statement's arrays, by the names in SHAPE and EACH after
    `prefix` (`delivering(prefix)`)."""
    shapes: dict[tuple[Any, ...], int] = {}
    recipients, numbers = [], []
    for v in values:
        shape = tuple(v[name] for name, _ in SHAPE)
        numbers.append(shapes.setdefault(shape, len(shapes) + 1))
        recipients.append(v["recipient"])
    columns = list(zip(*shapes, strict=True))
    given = {name: [utc(at) for at in column] if name == "at" else list(column)
             for (name, _), column in zip(SHAPE, columns, strict=True)}
    return {f"{prefix}{name}": column for name, column
            in {**given, "recipient": recipients, "shape": numbers}.items()}


def _insert_then_deliver(conn: Connection, values: Sequence[Mapping[str, Any]]) -> None:
    subscribers = subscriptions(conn)
    if not any(v["type"] in types for v in values for types in subscribers.values()):
        _insert_plain(conn, values)
        return
    ids = conn.execute(insert(events).returning(events.c.id, sort_by_parameter_order=True),
                       values).scalars().all()
    deliveries = [{"endpoint_id": endpoint, "event_id": id, "event_type": v["type"],
                   "created_at": v["at"], "status": PENDING, "next_at": v["at"]}
                  for id, v in zip(ids, values, strict=True)
                  for endpoint, types in subscribers.items() if v["type"] in types]
    conn.execute(insert(webhook_deliveries), deliveries)


_INSERT_EVENTS = (f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) "
                  f"VALUES ({', '.join('?' for _ in EVENT_COLUMNS)})")


def _insert_plain(conn: Connection, values: Sequence[Mapping[str, Any]]) -> None:
    """SQLite: the events through the driver's executemany, `at` converted by the
    column's own bind processor (the text SQLAlchemy would store). SQLAlchemy's
    executemany processes every parameter of every row in Python: a deferral of a
    1,000-recipient message (one event each) cost ~20 ms of the single writer."""
    process = stored_form(conn, events.c.at)
    stored = {at: process(at) for at in {v["at"] for v in values}}  # one time per attempt
    rows = [(v["message_id"], stored[v["at"]], v["type"], v["attempt"], v["recipient"],
             v["reply_code"], v["enhanced_code"], v["reply"], v["guidance"], v["detail"])
            for v in values]
    sqlite_many(conn, _INSERT_EVENTS, rows)


_SUBSCRIPTIONS = "SELECT id, events FROM webhook_endpoints WHERE disabled_at IS NULL"


def subscriptions(conn: Connection) -> dict[str, frozenset[str]]:
    """Enabled endpoints → the event types they get (SQLite). Read through the driver,
    in the same transaction: on this hot path SQLAlchemy's own execution would cost
    some fifty times the query (about 5 µs)."""
    cursor = conn.connection.driver_connection.execute(_SUBSCRIPTIONS)  # type: ignore[union-attr]
    return {id: frozenset(json.loads(types)) for id, types in cursor.fetchall()}

