"""SQLite's claim: its statements inside the write turn, its messages built after it.

A claim runs on the one writer thread, inside the write turn every other process's
writes wait for (sqlite_turn.py). Through SQLAlchemy, most of that time was Python
turning rows into values: each row's times and JSON processed as it was fetched, then
a `Message` built per row. Here the same statements (the claim's `DUE` and `CLAIMED`,
compiled once) go to the driver, and what they return is kept as it came from the
file; `PickedRows.messages` processes it with the columns' own result processors once
the transaction has committed and the turn is free. Ten one-recipient messages a
claim, 5,000 in all: 183-244 us of the writer thread's CPU a message with SQLAlchemy,
76-103 this way (a scratch loop of claim and record; see the commit message).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any

import structlog
from sqlalchemy import Connection, select, update
from sqlalchemy.engine import Dialect

from outbox.store import rows
from outbox.store.sql.bound_lists import in_bound_list
from outbox.store.sql.busy_claim import due_beyond_busy
from outbox.store.sql.driver_rows import stored_form
from outbox.store.sql.queries import CLAIM_LIMIT, CLAIMED, DUE
from outbox.store.tables import messages, recipients
from outbox.store.values import Message

log = structlog.get_logger("outbox.store")
_COLUMNS = tuple(messages.c.keys())
_ID, _ATTEMPTS = _COLUMNS.index("id"), _COLUMNS.index("attempts")


class PickedRows:
    """A claim's rows as SQLite gave them: messages in due order, and their recipients."""

    def __init__(self, dialect: Dialect, found: Sequence[tuple[Any, ...]],
                 recipient_rows: Sequence[tuple[Any, ...]]) -> None:
        self._dialect = dialect
        self._found = found
        self._recipient_rows = recipient_rows

    def claimed(self) -> list[tuple[str, int]]:
        return [(row[_ID], row[_ATTEMPTS]) for row in self._found]

    def messages(self) -> list[Message]:
        """Each row that reads as a message. Built after the commit, a row that does not
        (a corrupt content column) cannot roll the claim back, and raising here would
        report the results written with it as failed: it is logged and left out, and
        stays claimed until its lease runs out and recovery gives it back."""
        process = _processors(self._dialect)
        grouped = rows.group_recipients(self._recipient_rows)
        built = []
        for row in self._found:
            try:
                values = {name: value if convert is None or value is None else convert(value)
                          for name, convert, value in zip(_COLUMNS, process, row, strict=True)}
                built.append(rows.to_message(values, grouped.get(values["id"], ())))
            except Exception as exc:
                log.error("a claimed message cannot be read; left for recovery",
                          message=row[_ID], error=f"{type(exc).__name__}: {exc}")
        return built


def pick_due(conn: Connection, params: dict[str, Any]) -> PickedRows:
    """The claim: safe as two statements, since BEGIN IMMEDIATE holds the write lock
    throughout. Selecting first keeps the due order, which RETURNING does not promise."""
    driver = conn.connection.driver_connection
    assert driver is not None
    as_text = stored_form(conn, messages.c.updated_at)
    given = {**params, "c_now": as_text(params["c_now"]), "c_lease": as_text(params["c_lease"])}
    due_ids, claim, of_messages = _statements(conn.dialect)
    if "c_busy" in params:  # relays this worker has no room for (worker/relay_room.py)
        ids = [id for id, _ in due_beyond_busy(conn, params["c_now"], params["c_limit"],
                                               params["c_busy"], postgres=False)]
    else:
        ids = [id for (id,) in driver.execute(*due_ids(given))]
    if not ids:
        return PickedRows(conn.dialect, [], [])
    listed = json.dumps(ids)
    claimed = {row[_ID]: row for row in driver.execute(*claim({**given, "c_ids": listed}))}
    found = [claimed[id] for id in ids]
    return PickedRows(conn.dialect, found, driver.execute(*of_messages({"h_ids": listed}))
                      .fetchall())


Statement = Callable[[dict[str, Any]], tuple[str, list[Any]]]


@cache
def _statements(dialect: Dialect) -> tuple[Statement, Statement, Statement]:
    """The claim's statements for the driver: due ids, the claim, their recipients."""
    return (
        _for_driver(select(messages.c.id).where(DUE).order_by(messages.c.due_at)
                    .limit(CLAIM_LIMIT), dialect),
        _for_driver(update(messages).where(in_bound_list(messages.c.id, "c_ids", postgres=False))
                    .values(CLAIMED).returning(*messages.c), dialect),
        _for_driver(select(*(recipients.c[name] for name in rows.RECIPIENT_COLUMNS))
                    .where(in_bound_list(recipients.c.message_id, "h_ids", postgres=False))
                    .order_by(recipients.c.message_id, recipients.c.position), dialect))


def _for_driver(statement: Any, dialect: Dialect) -> Statement:
    """The SQL of `statement` on `dialect` (qmark) and a function from its named
    parameters, given as the driver takes them, to its positional ones (with the
    values the statement itself holds, such as CLAIMED's status)."""
    compiled = statement.compile(dialect=dialect)
    sql, names = str(compiled), compiled.positiontup

    def positional(params: dict[str, Any]) -> tuple[str, list[Any]]:
        values = compiled.construct_params(params)
        return sql, [values[name] for name in names]
    return positional


@cache
def _processors(dialect: Dialect) -> tuple[Callable[[Any], Any] | None, ...]:
    """Each messages column's result processor on `dialect` (times, JSON), as
    SQLAlchemy would apply it."""
    return tuple(column.type.dialect_impl(dialect).result_processor(dialect, None)
                 for column in messages.c)
