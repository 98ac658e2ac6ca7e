"""A database that cannot be reached is `DatabaseUnavailable` (the API's 503), and the
runner says whether anything may have been stored: nothing when the connection went
before the commit, perhaps (`CommitUncertain`) when it went while a commit was under
way. Real PostgreSQL (the machine's server, through a relay that cuts or holds the
connection, tests/tcp_hold.py) and real SQLite files locked by another process."""

from __future__ import annotations

import asyncio
import fcntl
import os
import socket
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy
from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url
from tests.lockers import SqliteLocker
from tests.pg import fresh_database, psql
from tests.processes import free_port
from tests.tcp_hold import EXECUTE, QUERY, HoldingRelay

from outbox.errors import CommitUncertain, DatabaseUnavailable, StorageError
from outbox.store.postgres import PostgresRunner, create_engine
from outbox.store.sqlite import SqliteRunner
from outbox.store.sqlite_turn import TURN_FILE, WriterTurn


@pytest.fixture
async def relayed() -> AsyncIterator[tuple[PostgresRunner, HoldingRelay]]:
    """A runner on a fresh database with a table `t`, its connections through a relay."""
    with fresh_database("outbox_outage") as url, HoldingRelay(5432) as relay:
        relayed_url = make_url(url).set(drivername="postgresql+asyncpg", port=relay.port)
        runner = PostgresRunner(create_engine(relayed_url, pool_size=1))
        await runner.write(lambda conn: conn.execute(text("CREATE TABLE t (n int)")))
        try:
            yield runner, relay
        finally:
            await runner.close()


def _insert(conn: Connection) -> None:
    conn.execute(text("INSERT INTO t VALUES (1)"))


def _count(conn: Connection) -> int:
    return int(conn.execute(text("SELECT count(*) FROM t")).scalar_one())


def _backend_pid(conn: Connection) -> int:
    return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def _client_socket(conn: Connection) -> socket.socket:
    """A duplicate of the socket under the asyncpg connection, to peek at what is unread."""
    transport = conn.connection.driver_connection._transport  # type: ignore[union-attr]
    return socket.socket(fileno=os.dup(transport.get_extra_info("socket").fileno()))


async def _until_read(peer: socket.socket) -> None:
    """Until the event loop has read (and asyncpg handled) every byte that arrived."""
    while True:
        try:
            unread = peer.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
        if not unread:  # the close itself: not held after all
            return
        await asyncio.sleep(0)


async def test_a_connection_cut_inside_a_transaction_stored_nothing(
        relayed: tuple[PostgresRunner, HoldingRelay]) -> None:
    runner, relay = relayed
    relay.cut_after = EXECUTE  # the INSERT runs; the connection goes before COMMIT
    with pytest.raises(DatabaseUnavailable) as failed:
        await runner.write(_insert)
    assert not isinstance(failed.value, CommitUncertain)  # the API: "nothing was stored"
    assert await runner.read(_count) == 0  # PostgreSQL rolled it back


async def test_a_connection_cut_after_a_statement_that_commits_itself_is_uncertain(
        relayed: tuple[PostgresRunner, HoldingRelay]) -> None:
    # write_alone: one statement in autocommit (the group commit's insert), committed by
    # the server before its answer, which never comes back.
    runner, relay = relayed
    relay.cut_after = EXECUTE
    with pytest.raises(CommitUncertain) as failed:
        await runner.write_alone(_insert)
    assert "nothing was stored" not in failed.value.one_line()
    assert "Idempotency-Key" in failed.value.hint
    assert await runner.read(_count) == 1  # it was stored: "nothing stored" would be a lie


async def test_a_commit_whose_answer_is_lost_is_uncertain(
        relayed: tuple[PostgresRunner, HoldingRelay]) -> None:
    runner, relay = relayed

    def insert_then_arm(conn: Connection) -> None:
        _insert(conn)
        relay.cut_after = QUERY  # asyncpg's COMMIT, a simple query

    with pytest.raises(CommitUncertain):
        await runner.write(insert_then_arm)
    assert await runner.read(_count) == 1


async def test_a_pooled_connection_whose_fatal_came_before_its_close_is_unavailable(
        relayed: tuple[PostgresRunner, HoldingRelay]) -> None:
    """asyncpg's "cannot switch to state 12; another operation (2) is in progress"
    (MagicStack/asyncpg#1069): PostgreSQL ends an idle pooled session (a fast shutdown,
    pg_terminate_backend) with a FATAL and then its close; asyncpg reads the FATAL while
    idle, and a query in the window before the close is refused in that state. Held
    open here by the relay; the query was never sent, so nothing was stored."""
    runner, relay = relayed
    pid = await runner.read(_backend_pid)
    await runner.read(_backend_pid)  # a prepared statement now: the next is a Bind (12)
    peer = await runner.read(_client_socket)  # the pool has this one connection
    relay.holding = True
    psql(f"SELECT pg_terminate_backend({pid})")
    assert relay.wait_for_server_close()
    await _until_read(peer)  # asyncpg has read the FATAL; the close is held back
    peer.close()
    with pytest.raises(DatabaseUnavailable) as failed:
        await runner.write_alone(_backend_pid)  # even where a lost statement may commit
    assert not isinstance(failed.value, CommitUncertain)
    assert "InternalClientError" in failed.value.message
    relay.release()
    assert await runner.read(_backend_pid) != pid  # a new connection, no lasting harm


async def test_a_server_that_refuses_connections_is_unavailable() -> None:
    url = make_url(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/postgres")
    runner = PostgresRunner(create_engine(url, pool_size=1))  # nobody listens there
    try:
        with pytest.raises(DatabaseUnavailable) as failed:
            await runner.write(_insert)
        assert not isinstance(failed.value, CommitUncertain)
    finally:
        await runner.close()


async def test_a_bug_in_a_statement_stays_a_storage_error(
        relayed: tuple[PostgresRunner, HoldingRelay]) -> None:
    runner, _ = relayed
    with pytest.raises(StorageError) as failed:
        await runner.read(lambda conn: conn.execute(text("SELECT nosuchcolumn FROM t")))
    assert not isinstance(failed.value, DatabaseUnavailable)


# --- SQLite: locked by another process past the busy timeout -----------------------------

def _sqlite_runner(path: Path, turn: WriterTurn | None = None) -> SqliteRunner:
    # A busy timeout of 0.2 s instead of 30 s: the same refusal, without the wait.
    engine = sqlalchemy.create_engine(f"sqlite:///{path}", connect_args={"timeout": 0.2})
    runner = SqliteRunner(engine, turn)
    return runner


async def test_sqlite_locked_past_the_busy_timeout_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE t (n int)")
    runner = _sqlite_runner(path)
    try:
        with SqliteLocker(str(path)), pytest.raises(DatabaseUnavailable) as failed:
            await runner.write(_insert)
        assert "database is locked" in failed.value.message
        await runner.write(_insert)  # released: it goes through
        assert await runner.read(_count) == 1
    finally:
        await runner.close()


async def test_sqlite_write_turn_held_past_the_timeout_is_unavailable(tmp_path: Path) -> None:
    turns = tmp_path / "turns"
    turns.mkdir()
    runner = _sqlite_runner(tmp_path / "turn.db", WriterTurn(turns, timeout=0.2))
    fd = os.open(turns / TURN_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as another process of the same database holds it
        with pytest.raises(DatabaseUnavailable):
            await runner.write(_insert)
    finally:
        os.close(fd)
        await runner.close()


async def test_a_broken_sqlite_file_stays_a_storage_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.db"
    path.write_bytes(b"this is not a database" * 200)
    runner = _sqlite_runner(path)
    try:
        with pytest.raises(StorageError) as failed:
            await runner.read(_count)
        assert not isinstance(failed.value, DatabaseUnavailable)
    finally:
        await runner.close()
