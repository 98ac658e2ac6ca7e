"""PostgreSQL: new messages with their recipients, accepted events (and the webhook
deliveries those cause) and blob uses, in one statement.

Written as five statements, a group commit cost seven round trips with BEGIN and
COMMIT, each about 100-125 µs of serve's CPU (SQLAlchemy and asyncpg) whatever the
number of messages. One statement of data-modifying CTEs needs no transaction around
it: sql/group_commit.py runs it in autocommit, where its commit is as durable as
COMMIT's. The foreign keys hold: PostgreSQL checks them when the statement ends, and
the CTEs' rows are there by then. Each table's part is its own module's INSERT, given
parameter names of its own (`driver_rows.prefixed`). Issue 15, `bench/cpu_split.py
--path http-lean --backend postgres`, six interleaved pairs: +9, +9, +19, +22, -3 and
+12 % msg/s; serve's CPU per message fell in five of them. smtp-source and a paced
500 msg/s did not move.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

from sqlalchemy import Connection, Text, TextClause, text

from outbox.store import rows
from outbox.store.sql import message_rows, recipient_rows, webhook_events
from outbox.store.sql.driver_rows import TIME, array_casts, array_params, arrays, prefixed
from outbox.store.values import NewMessage

_BLOB_USES = (("sha256", Text()), ("message_id", Text()), ("keep_until", TIME))
_M, _R = prefixed("m_", message_rows.COLUMNS), prefixed("r_", recipient_rows.COLUMNS)
_B = prefixed("b_", _BLOB_USES)
_E = prefixed("e_", (*webhook_events.SHAPE, *webhook_events.EACH))  # names distinct


@cache
def _statement() -> TextClause:
    """Built on first use (driver_rows.array_casts)."""
    events, deliveries = webhook_events.delivering("e_")
    blob_names = ", ".join(name for name, _ in _BLOB_USES)
    return text(f"""
WITH m AS ({message_rows.insert_from_arrays("m_")}),
r AS ({recipient_rows.insert_from_arrays("r_")}),
b AS (INSERT INTO blob_refs ({blob_names}) SELECT * FROM unnest({array_casts(_B)})),
{events}{deliveries}""").bindparams(*array_params((*_M, *_R, *_B, *_E)))


def insert_all(conn: Connection, chosen: Sequence[NewMessage]) -> None:
    """`chosen` (at least one), as queries.insert_all writes them, in one statement."""
    events = webhook_events.shape_arrays(
        [rows.event_values(m.id, rows.accepted_event(m)) for m in chosen])
    uses = [(use.sha256, m.id, use.keep_until) for m in chosen for use in m.blobs]
    conn.execute(_statement(), {
        **arrays(_M, [message_rows.row(m) for m in chosen]),
        **arrays(_R, recipient_rows.rows_of(chosen)),
        **arrays(_B, uses),
        **{f"e_{name}": values for name, values in events.items()}})
