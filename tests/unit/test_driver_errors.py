"""runner.translate_errors: the driver's own errors, from a body that goes to the
sqlite3 connection past SQLAlchemy (as sql/webhook_events.py reads the subscriptions),
reach callers as Outbox's errors, on a real SQLite database."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url

from outbox.errors import Conflict, StorageError
from outbox.store.sqlite import SqliteRunner, create_engine


def _driver_execute(conn: Connection, sql: str, *params: object) -> None:
    conn.connection.driver_connection.execute(sql, params)  # type: ignore[union-attr]


def _rows(conn: Connection) -> list[tuple[int, str]]:
    return [(k, v) for k, v in conn.execute(text("SELECT k, v FROM t ORDER BY k"))]


async def test_the_drivers_own_errors_reach_callers_as_outboxs(tmp_path: Path) -> None:
    runner = SqliteRunner(create_engine(make_url(f"sqlite:///{tmp_path / 'driver.db'}")))
    try:
        await runner.write(_driver_execute, "CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)")
        await runner.write(_driver_execute, "INSERT INTO t VALUES (?, ?)", 1, "a")
        with pytest.raises(Conflict, match=r"UNIQUE constraint failed: t\.k"):
            await runner.write(_driver_execute, "INSERT INTO t VALUES (?, ?)", 1, "again")
        with pytest.raises(StorageError, match="no such table: missing"):
            await runner.read(_driver_execute, "SELECT * FROM missing")
        assert await runner.read(_rows) == [(1, "a")]
    finally:
        await runner.close()
