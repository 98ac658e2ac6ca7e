"""sql/sqlite_rows.py: many rows in a few multi-row statements on SQLite, on a real
database through store/sqlite.py's engine and runner."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import make_url

from outbox.errors import Conflict, StorageError
from outbox.store.sql import sqlite_rows
from outbox.store.sqlite import SqliteRunner, create_engine

INSERT = sqlite_rows.inserting("t", "k, v")
UPDATE = sqlite_rows.updating(["v", "k"], "UPDATE t SET v = u.v FROM u WHERE t.k = u.k")


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = create_engine(make_url(f"sqlite:///{tmp_path / 'rows.db'}"))
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)"))
    yield engine
    engine.dispose()


def _all(conn: Connection) -> list[tuple[int, str | None]]:
    return [(k, v) for k, v in conn.execute(text("SELECT k, v FROM t ORDER BY rowid"))]


@given(st.integers(min_value=0, max_value=2_000), st.sampled_from([1, 2, 16, 256]))
def test_chunks_add_up_to_the_count_in_powers_of_two_no_larger_than_asked(
        count: int, largest: int) -> None:
    sizes = sqlite_rows.chunk_sizes(count, largest)
    assert sum(sizes) == count
    assert all(size <= largest and size & (size - 1) == 0 for size in sizes)
    assert sizes == sorted(sizes, reverse=True)
    # Past the whole chunks, each power of two at most once: few statements, few texts.
    rest = [size for size in sizes if size < largest]
    assert len(rest) == len(set(rest))


def test_a_statement_holds_the_rows_placeholders_where_the_template_says() -> None:
    assert sqlite_rows.statement(INSERT, 2, 3) == (
        "INSERT INTO t (k, v) VALUES (?, ?), (?, ?), (?, ?)")
    assert sqlite_rows.statement(UPDATE, 2, 1) == (
        "WITH u(v, k) AS (VALUES (?, ?)) UPDATE t SET v = u.v FROM u WHERE t.k = u.k")


@pytest.mark.parametrize("count", [1, 3, 256, 257, 700])
def test_every_row_is_inserted_in_order_then_updated(engine: Engine, count: int) -> None:
    rows = [(k, f"v{k}") for k in range(count)]
    with engine.begin() as conn:
        sqlite_rows.execute(conn, INSERT, rows)
        sqlite_rows.execute(conn, UPDATE, [(f"w{k}", k) for k in range(0, count, 2)])
    with engine.begin() as conn:
        assert _all(conn) == [(k, f"w{k}" if k % 2 == 0 else f"v{k}") for k in range(count)]


def test_no_rows_run_no_statement(engine: Engine) -> None:
    with engine.begin() as conn:
        sqlite_rows.execute(conn, "not SQL at all {rows}", [])


def test_a_lower_limit_on_parameters_makes_smaller_statements(engine: Engine) -> None:
    rows = [(k, f"v{k}") for k in range(100)]
    with engine.begin() as conn:
        driver = conn.connection.driver_connection
        assert driver is not None
        driver.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 20)  # 10 rows of 2
        sqlite_rows.execute(conn, INSERT, rows)  # chunks of 8: past the limit it would fail
        assert _all(conn) == rows
        with pytest.raises(sqlite3.OperationalError, match="too many SQL variables"):
            driver.execute(sqlite_rows.statement(INSERT, 2, 16), [0] * 32)


def test_the_writes_are_part_of_the_transaction_and_roll_back_with_it(engine: Engine) -> None:
    with pytest.raises(RuntimeError), engine.begin() as conn:
        sqlite_rows.execute(conn, INSERT, [(1, "a"), (2, "b")])
        raise RuntimeError("the body fails after the rows")
    with engine.begin() as conn:
        assert _all(conn) == []


async def test_the_drivers_own_errors_reach_callers_as_outboxs(engine: Engine) -> None:
    runner = SqliteRunner(engine)
    try:
        await runner.write(sqlite_rows.execute, INSERT, [(1, "a")])
        with pytest.raises(Conflict, match=r"UNIQUE constraint failed: t\.k"):
            await runner.write(sqlite_rows.execute, INSERT, [(2, "b"), (1, "again")])
        with pytest.raises(StorageError, match="no such table: missing"):
            await runner.write(sqlite_rows.execute, sqlite_rows.inserting("missing", "k"),
                               [(1,)])
        # The failed transaction wrote nothing, not even its first row.
        assert await runner.read(_all) == [(1, "a")]
    finally:
        await runner.close()
