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
+12 % msg/s; serve's CPU per message fell in five of them.

Guarded (`insert_all(..., guarded=True)`), the statement also makes the two reads that
went before it, in its own snapshot: whether a recipient of a message that refuses
suppressed addresses is on the list, and whether one of the idempotency keys is taken.
If neither, as for nearly every group, it writes everything; if either, it writes
nothing and says so, and queries.insert_messages reads the list and the keys and
writes what may be written. With a notice (`Wakeup.notice`), it NOTIFYs the delivery
processes in its own commit too: a group of submits that cost serve three round trips
(the suppression list, the insert, the NOTIFY) costs one.

PostgreSQL lets one notifying transaction commit at a time, across the cluster: serve's
groups commit one after the other anyway; another node's group, or a big message
committing beside them, waits for the commit under way to end.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

from sqlalchemy import Connection, Text, TextClause, bindparam, text

from outbox.core.model import MessageStatus
from outbox.core.suppression import suppression_key
from outbox.store import rows
from outbox.store.sql import message_rows, recipient_rows, webhook_events
from outbox.store.sql.driver_rows import TIME, array_casts, array_params, arrays, prefixed, utc
from outbox.store.sql.wakeup import Notice
from outbox.store.values import NewMessage

_BLOB_USES = (("sha256", Text()), ("message_id", Text()), ("keep_until", TIME))
_M, _R = prefixed("m_", message_rows.COLUMNS), prefixed("r_", recipient_rows.COLUMNS)
_B = prefixed("b_", _BLOB_USES)
_E = webhook_events.array_columns("e_")
# The guard's arrays: suppression keys, and the idempotency keys' owners and keys.
_G = (("g_addresses", Text()), ("g_owners", Text()), ("g_keys", Text()))
_GO = "(SELECT ok FROM go)"


@cache
def _statement() -> TextClause:
    """Built on first use (driver_rows.array_casts)."""
    events, deliveries = webhook_events.delivering("e_", where=_GO)
    blob_names = ", ".join(name for name, _ in _BLOB_USES)
    addresses, owners, keys = (array_casts((column,)) for column in _G)
    return text(f"""
WITH go AS (SELECT
  NOT EXISTS (SELECT 1 FROM suppressions WHERE address = ANY({addresses})
              AND (expires_at IS NULL OR expires_at > :g_now))
  AND NOT EXISTS (SELECT 1 FROM messages WHERE owner = ANY({owners})
                  AND idempotency_key = ANY({keys})) AS ok),
m AS ({message_rows.insert_from_arrays("m_", where=_GO)}),
r AS ({recipient_rows.insert_from_arrays("r_", where=_GO)}),
b AS (INSERT INTO blob_refs ({blob_names}) SELECT * FROM unnest({array_casts(_B)})
      WHERE {_GO}),
{events},
d AS ({deliveries})
SELECT ok, CASE WHEN ok AND CAST(:n_payload AS TEXT) IS NOT NULL
                THEN pg_notify(CAST(:n_channel AS TEXT), CAST(:n_payload AS TEXT)) END
FROM go""").bindparams(*array_params((*_M, *_R, *_B, *_E, *_G)),
                        bindparam("g_now", type_=TIME))


def insert_all(conn: Connection, chosen: Sequence[NewMessage], notice: Notice | None = None,
               *, guarded: bool = False) -> bool:
    """`chosen` (at least one), as queries.insert_all writes them, in one statement that
    NOTIFYs `notice` when it commits if one of them is queued. `guarded`: only if none
    of their recipients that must not be suppressed is on the list and none of their
    idempotency keys is taken; False if nothing was written for that."""
    uses = [(use.sha256, m.id, use.keep_until) for m in chosen for use in m.blobs]
    asking = [m for m in chosen if m.refuse_suppressed] if guarded else []
    claims = [m.idempotency for m in chosen if m.idempotency] if guarded else []
    queued = any(m.status is MessageStatus.QUEUED for m in chosen)
    channel, payload = notice if notice and queued else ("", None)
    ok = conn.execute(_statement(), {
        **arrays(_M, [message_rows.row(m) for m in chosen]),
        **arrays(_R, recipient_rows.rows_of(chosen)),
        **arrays(_B, uses),
        **webhook_events.shape_arrays(
            [rows.event_values(m.id, rows.accepted_event(m)) for m in chosen], "e_"),
        "g_addresses": sorted({suppression_key(r.address) for m in asking
                               for r in m.recipients}),
        "g_owners": sorted({c.owner for c in claims}), "g_keys": sorted({c.key for c in claims}),
        "g_now": utc(min((m.accepted_at for m in asking), default=chosen[0].accepted_at)),
        "n_channel": channel, "n_payload": payload}).scalar_one()
    return bool(ok)
