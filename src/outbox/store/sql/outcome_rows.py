"""Attempts' outcomes, written in bulk in the transaction that ends their claims: each
message's new state, its attempt, and its recipients' results.

SQLAlchemy's executemany processes every parameter of every row in Python, and on
PostgreSQL each row is then a statement of its own for the server to bind and run,
three per delivered message. SQLite gets plain tuples through the driver's
executemany; PostgreSQL one array per column and `unnest`: one statement per batch
whatever its size, as sql/recipient_rows.py writes a new message's recipients.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import cache

from sqlalchemy import Connection, Integer, Text, TextClause, text

from outbox.core.model import MessageStatus
from outbox.store import rows
from outbox.store.sql import webhook_events
from outbox.store.sql.driver_rows import TIME as _TIME
from outbox.store.sql.driver_rows import (
    array_casts,
    array_params,
    arrays,
    from_arrays,
    prefixed,
    write_rows,
)
from outbox.store.values import AttemptRecord, RecipientUpdate

_SENDING = MessageStatus.SENDING.value

# The message: its claim ends only where its token still holds (a record whose claim was
# taken over is refused before this, queries._accepted_records; the condition stays as
# the last word).
_FINISH = (("status", Text()), ("due_at", _TIME), ("inc", Integer()), ("at", _TIME),
           ("held_since", _TIME), ("hold_reason", Text()), ("relay", Text()),
           ("id", Text()), ("token", Text()))
_FINISH_SET = ("status = {0}, due_at = {1}, attempts = {m}attempts + {2}, updated_at = {3}, "
               "held_since = {4}, hold_reason = {5}, held_for_relay = {6}, claimed_by = NULL, "
               "claim_token = NULL, lease_until = NULL")
_FINISH_SQLITE = (f"UPDATE messages SET {_FINISH_SET.format(*['?'] * 7, m='')} "
                  f"WHERE id = ? AND claim_token = ? AND status = '{_SENDING}'")

_ATTEMPT = (("message_id", Text()), ("number", Integer()), ("relay", Text()),
            ("started_at", _TIME), ("finished_at", _TIME), ("outcome", Text()),
            ("transcript", Text()))
_ATTEMPT_NAMES = ", ".join(name for name, _ in _ATTEMPT)
_ATTEMPT_SQLITE = f"INSERT INTO attempts ({_ATTEMPT_NAMES}) VALUES ({', '.join('?' * 7)})"

_RECIPIENT = (("status", Text()), ("reply_code", Integer()), ("enhanced_code", Text()),
              ("reply", Text()), ("guidance", Text()), ("message_id", Text()),
              ("address", Text()))
_RECIPIENT_SET = ("status = {0}, reply_code = {1}, enhanced_code = {2}, reply = {3}, "
                  "guidance = {4}")
_RECIPIENT_SQLITE = (f"UPDATE recipients SET {_RECIPIENT_SET.format(*['?'] * 5)} "
                     "WHERE message_id = ? AND address = ?")


def finish_claims(conn: Connection, chosen: Sequence[AttemptRecord]) -> None:
    """Each message's columns after its attempt (`rows.finish_row`). `chosen` holds at
    most one record per message."""
    found = [rows.finish_row(record) for record in chosen]
    write_rows(conn, found, _FINISH_SQLITE, _finish_postgres, _FINISH)


def insert_attempts(conn: Connection, chosen: Sequence[AttemptRecord]) -> None:
    found = [_attempt_row(r) for r in chosen]
    write_rows(conn, found, _ATTEMPT_SQLITE, _attempts_postgres, _ATTEMPT)


def _attempt_row(r: AttemptRecord) -> tuple[object, ...]:
    return (r.message_id, r.number, r.relay, r.started_at, r.finished_at, r.outcome,
            r.transcript)


def update_recipients(conn: Connection, updates: Sequence[tuple[str, RecipientUpdate]]
                      ) -> None:
    """Each (message id, update) pair's recipient. Of two updates of one recipient the
    later holds, as it would one statement after the other."""
    write_rows(conn, _latest_results(updates), _RECIPIENT_SQLITE, _recipients_postgres,
               _RECIPIENT)


def _latest_results(updates: Iterable[tuple[str, RecipientUpdate]]) -> list[tuple[object, ...]]:
    """The rows of `_RECIPIENT`, one per recipient: of two updates the later."""
    latest = {(id, u.address): (u.status.value, u.reply_code, u.enhanced_code, u.reply,
                                u.guidance, id, u.address) for id, u in updates}
    return list(latest.values())


# PostgreSQL's statements, built on first use (driver_rows.array_casts).

@cache
def _finish_postgres() -> TextClause:
    set_ = _FINISH_SET.format(*(f"u.{name}" for name, _ in _FINISH[:7]), m="messages.")
    return text(f"UPDATE messages SET {set_} FROM {from_arrays(_FINISH)} "
                f"WHERE messages.id = u.id AND messages.claim_token = u.token "
                f"AND messages.status = '{_SENDING}'").bindparams(*array_params(_FINISH))


@cache
def _attempts_postgres() -> TextClause:
    return text(f"INSERT INTO attempts ({_ATTEMPT_NAMES}) SELECT * FROM unnest("
                f"{array_casts(_ATTEMPT)})").bindparams(*array_params(_ATTEMPT))


@cache
def _recipients_postgres() -> TextClause:
    set_ = _RECIPIENT_SET.format(*(f"u.{name}" for name, _ in _RECIPIENT[:5]))
    return text(f"UPDATE recipients SET {set_} FROM {from_arrays(_RECIPIENT)} "
                "WHERE recipients.message_id = u.message_id "
                "AND recipients.address = u.address").bindparams(*array_params(_RECIPIENT))


# PostgreSQL, the usual batch: one record per message, each with a few recipients. The
# claims' tokens were read (FOR UPDATE), then each table written, five statements and
# five round trips; as one statement of data-modifying CTEs, the rows are locked in id
# order as before (`l`), the claims still held end (`f`), and only their attempts,
# recipients' results and events (with the webhook deliveries those cause) are written.
# A batch with two records of one message, or a message with many recipients (a
# relay-wide deferral of a big message, written in one UPDATE by queries._update_recipients),
# takes the statements above.
_FEW = 50  # recipient updates per record
_F, _A = prefixed("f_", _FINISH), prefixed("a_", _ATTEMPT)
_U, _E = prefixed("u_", _RECIPIENT), webhook_events.array_columns("e_")


def fits_one_statement(records: Sequence[AttemptRecord]) -> bool:
    ids = {r.message_id for r in records}
    return len(ids) == len(records) and all(len(r.recipient_updates) <= _FEW for r in records)


def record_in_one_statement(conn: Connection, records: Sequence[AttemptRecord]) -> list[bool]:
    """`records` (`fits_one_statement`) as queries.record_attempts writes them: for
    each, whether its claim held and it was written."""
    held = {row.id for row in conn.execute(_one_statement(), {
        "l_ids": sorted(r.message_id for r in records),
        **arrays(_F, [rows.finish_row(r) for r in records]),
        **arrays(_A, [_attempt_row(r) for r in records]),
        **arrays(_U, _latest_results((r.message_id, u) for r in records
                                     for u in r.recipient_updates)),
        **webhook_events.shape_arrays(
            [rows.event_values(r.message_id, e) for r in records for e in r.events], "e_")})}
    return [r.message_id in held for r in records]


@cache
def _one_statement() -> TextClause:
    def names(columns: tuple[tuple[str, object], ...]) -> str:
        return ", ".join(name for name, _ in columns)
    finish = _FINISH_SET.format(*(f"u.{name}" for name, _ in _FINISH[:7]), m="messages.")
    results = _RECIPIENT_SET.format(*(f"v.{name}" for name, _ in _RECIPIENT[:5]))
    held = "IN (SELECT id FROM f)"
    events, deliveries = webhook_events.delivering("e_", where=f"s.message_id {held}")
    return text(f"""
WITH l AS (SELECT id FROM messages WHERE id = ANY(CAST(:l_ids AS TEXT[]))
           AND status = '{_SENDING}' ORDER BY id FOR UPDATE),
f AS (UPDATE messages SET {finish} FROM unnest({array_casts(_F)}) AS u({names(_FINISH)})
      WHERE messages.id = u.id AND messages.claim_token = u.token
        AND messages.status = '{_SENDING}' AND messages.id IN (SELECT id FROM l)
      RETURNING messages.id),
a AS (INSERT INTO attempts ({_ATTEMPT_NAMES}) SELECT * FROM unnest({array_casts(_A)})
      AS x({_ATTEMPT_NAMES}) WHERE x.message_id {held}),
r AS (UPDATE recipients SET {results} FROM unnest({array_casts(_U)}) AS v({names(_RECIPIENT)})
      WHERE recipients.message_id = v.message_id AND recipients.address = v.address
        AND v.message_id {held}),
{events},
d AS ({deliveries})
SELECT id FROM f""").bindparams(*array_params((*_F, *_A, *_U, *_E)),
                                 *array_params((("l_ids", Text()),)))
