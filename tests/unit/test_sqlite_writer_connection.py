"""store/sqlite.WriterConnection: the writer thread keeps one connection from one write
to the next (no check-out, reset and check-in inside the write turn), gives it back to
the pool when a write raises, and closes it when the runner closes; on a real SQLite
file."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Connection, event, text
from sqlalchemy.engine import make_url

from outbox.errors import Conflict
from outbox.store.sqlite import SqliteRunner, create_engine


def _execute(conn: Connection, sql: str, params: dict[str, object] | None = None) -> int:
    conn.execute(text(sql), params or {})
    return id(conn.connection.driver_connection)


def _insert_then_fail(conn: Connection) -> None:
    conn.execute(text("INSERT INTO t VALUES (2, 'lost')"))
    conn.execute(text("INSERT INTO t VALUES (1, 'taken')"))  # the primary key is taken


def _rows(conn: Connection) -> list[tuple[int, str]]:
    return [(k, v) for k, v in conn.execute(text("SELECT k, v FROM t ORDER BY k"))]


@pytest.fixture
def counted(tmp_path: Path) -> tuple[SqliteRunner, dict[str, int]]:
    engine = create_engine(make_url(f"sqlite:///{tmp_path / 'writer.db'}"))
    counts = {"checkout": 0, "checkin": 0}
    for name in counts:
        event.listen(engine, name, lambda *_, name=name: counts.__setitem__(name,
                                                                           counts[name] + 1))
    return SqliteRunner(engine), counts


async def test_writes_share_one_connection_without_giving_it_back(
        counted: tuple[SqliteRunner, dict[str, int]]) -> None:
    runner, counts = counted
    try:
        first = await runner.write(_execute, "CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)")
        later = [await runner.write(_execute, "INSERT INTO t VALUES (:k, 'x')", {"k": k})
                 for k in range(5)]
        assert set(later) == {first}
        assert counts == {"checkout": 1, "checkin": 0}
        assert await runner.read(_rows) == [(k, "x") for k in range(5)]  # all committed
    finally:
        await runner.close()
    assert counts["checkin"] == counts["checkout"]  # closing gave every connection back


async def test_a_write_that_raises_is_rolled_back_and_the_next_one_commits(
        counted: tuple[SqliteRunner, dict[str, int]]) -> None:
    runner, counts = counted
    try:
        await runner.write(_execute, "CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)")
        await runner.write(_execute, "INSERT INTO t VALUES (1, 'a')")
        with pytest.raises(Conflict):
            await runner.write(_insert_then_fail)
        assert counts["checkin"] == 1  # given back to the pool, which reset it
        await runner.write(_execute, "INSERT INTO t VALUES (3, 'c')")
        assert await runner.read(_rows) == [(1, "a"), (3, "c")]
    finally:
        await runner.close()
