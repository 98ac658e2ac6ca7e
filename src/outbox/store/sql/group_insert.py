"""PostgreSQL: new messages with their recipients, accepted events (and the webhook
deliveries those cause) and blob uses, in one statement.

Written as five statements, a group commit cost seven round trips with BEGIN and
COMMIT, each about 100-125 µs of serve's CPU (SQLAlchemy and asyncpg) whatever the
number of messages. One statement of data-modifying CTEs needs no transaction around
it: sql/group_commit.py runs it in autocommit, where its commit is as durable as
COMMIT's. The foreign keys hold: PostgreSQL checks them when the statement ends, and
the CTEs' rows are there by then. Issue 15, `bench/cpu_split.py --path http-lean
--backend postgres`, six interleaved pairs: +9, +9, +19, +22, -3 and +12 % msg/s; serve's
CPU per message fell in five of them. smtp-source and a paced 500 msg/s did not move.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from sqlalchemy import Connection, DateTime, Text, TextClause, text

from outbox.store import rows
from outbox.store.sql import message_rows, recipient_rows
from outbox.store.sql.driver_rows import TIME, Columns, array_casts, array_params, utc
from outbox.store.sql.webhook_events import EACH, EVENT_COLUMNS, SHAPE, shape_arrays
from outbox.store.values import NewMessage
from outbox.store.webhook_values import PENDING

_BLOB_USES = (("sha256", Text()), ("message_id", Text()), ("keep_until", TIME))


def _named(prefix: str, columns: Columns) -> Columns:
    """The columns' parameters, prefixed: the tables share column names."""
    return tuple((f"{prefix}{name}", kind) for name, kind in columns)


_M, _R = _named("m_", message_rows.COLUMNS), _named("r_", recipient_rows.COLUMNS)
_S, _E, _B = _named("s_", SHAPE), _named("e_", EACH), _named("b_", _BLOB_USES)


def _names(columns: Columns) -> str:
    return ", ".join(name for name, _ in columns)


@cache
def _statement() -> TextClause:
    """Built on first use (driver_rows.array_casts)."""
    to_json = message_rows.JSON_COLUMNS
    values = ", ".join(f"CAST(u.{n} AS JSON)" if n in to_json else f"u.{n}"
                       for n, _ in message_rows.COLUMNS)
    picked = ", ".join(f"e.{n}" if n == "recipient" else f"s.{n}" for n in EVENT_COLUMNS)
    return text(f"""
WITH m AS (
    INSERT INTO messages ({_names(message_rows.COLUMNS)}) SELECT {values}
    FROM unnest({array_casts(_M)}) AS u({_names(message_rows.COLUMNS)})),
r AS (
    INSERT INTO recipients ({_names(recipient_rows.COLUMNS)})
    SELECT * FROM unnest({array_casts(_R)})),
b AS (
    INSERT INTO blob_refs ({_names(_BLOB_USES)}) SELECT * FROM unnest({array_casts(_B)})),
shapes AS (
    SELECT * FROM unnest({array_casts(_S)}) WITH ORDINALITY AS s({_names(SHAPE)}, n)),
added AS (
    INSERT INTO events ({", ".join(EVENT_COLUMNS)})
    SELECT {picked}
    FROM unnest({array_casts(_E)}) WITH ORDINALITY AS e(recipient, shape, position)
    JOIN shapes s ON s.n = e.shape
    ORDER BY e.position
    RETURNING id, type, at)
INSERT INTO webhook_deliveries (endpoint_id, event_id, event_type, created_at, status, next_at)
SELECT e.id, added.id, added.type, added.at, '{PENDING}', added.at
FROM added JOIN webhook_endpoints e
  ON e.disabled_at IS NULL AND CAST(e.events AS jsonb) @> jsonb_build_array(added.type)
""").bindparams(*array_params((*_M, *_R, *_B, *_S, *_E)))


def _arrays(columns: Columns, found: Sequence[tuple[Any, ...]]) -> dict[str, list[Any]]:
    """One list per column of `found` (tuples in the columns' order), times in UTC."""
    arrays: dict[str, list[Any]] = {}
    for i, (name, kind) in enumerate(columns):
        column = [row[i] for row in found]
        arrays[name] = [utc(at) for at in column] if isinstance(kind, DateTime) else column
    return arrays


def insert_all(conn: Connection, chosen: Sequence[NewMessage]) -> None:
    """`chosen` (at least one), as queries.insert_all writes them, in one statement."""
    events = shape_arrays([rows.event_values(m.id, rows.accepted_event(m)) for m in chosen])
    uses = [(use.sha256, m.id, use.keep_until) for m in chosen for use in m.blobs]
    conn.execute(_statement(), {
        **_arrays(_M, [message_rows.row(m) for m in chosen]),
        **_arrays(_R, recipient_rows.rows_of(chosen)),
        **_arrays(_B, uses),
        **{f"s_{name}": events[name] for name, _ in SHAPE},
        **{f"e_{name}": events[name] for name, _ in EACH}})
