"""Attempts' outcomes, written in bulk in the transaction that ends their claims: each
message's new state, its attempt, and its recipients' results.

SQLAlchemy's executemany processes every parameter of every row in Python, and on
PostgreSQL each row is then a statement of its own for the server to bind and run,
three per delivered message. SQLite gets plain tuples through the driver's
executemany; PostgreSQL one array per column and `unnest`: one statement per batch
whatever its size, as sql/recipient_rows.py writes a new message's recipients.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

from sqlalchemy import Connection, Integer, Text, TextClause, text

from outbox.core.model import MessageStatus
from outbox.store import rows
from outbox.store.sql.driver_rows import TIME as _TIME
from outbox.store.sql.driver_rows import array_casts, array_params, from_arrays, write_rows
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
    found = [(r.message_id, r.number, r.relay, r.started_at, r.finished_at, r.outcome,
              r.transcript) for r in chosen]
    write_rows(conn, found, _ATTEMPT_SQLITE, _attempts_postgres, _ATTEMPT)


def update_recipients(conn: Connection, updates: Sequence[tuple[str, RecipientUpdate]]
                      ) -> None:
    """Each (message id, update) pair's recipient. Of two updates of one recipient the
    later holds, as it would one statement after the other."""
    latest = {(id, u.address): (u.status.value, u.reply_code, u.enhanced_code, u.reply,
                                u.guidance, id, u.address) for id, u in updates}
    write_rows(conn, list(latest.values()), _RECIPIENT_SQLITE, _recipients_postgres,
               _RECIPIENT)


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
