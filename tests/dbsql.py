"""Plain SQL on a test's database, from outside any `outbox` process: to look at
the queue while no process is running (after `kill -9`), to count events in bulk,
and to break the database on purpose (fault tests).

    rows = sql(url, "SELECT id FROM messages WHERE status = 'sending'")

Rows come back as tuples of text, as `psql` prints them. On PostgreSQL a SELECT goes
through one kept connection per database (the product's driver, asyncpg, on a thread of
this module's own), each row read as the server's text of it; anything else through
`psql`. A `psql` run cost about 40 ms of CPU and a server backend's start, and tests poll
the queue with these ten times a second: on a two-core CI machine that slowed the very
processes whose speed the test measures. SQLite goes through the sqlite3 module, waiting
up to `timeout` for a lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import subprocess
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

FIELD_SEPARATOR = "\x1f"
KEPT = 8  # connections kept, the most recently used: a test's database is dropped after it


def sql(url: str, statement: str, timeout: float = 30.0) -> list[tuple[str, ...]]:
    """Run one statement; rows as tuples of text (None for NULL on SQLite, "" on
    PostgreSQL, as `psql` prints it)."""
    if url.startswith("sqlite"):
        return _sqlite(sqlite_path(url), statement, timeout)
    if statement.lstrip()[:7].upper() == "SELECT ":
        return SESSIONS.select(url, statement, timeout)
    return _psql(url, statement, timeout)


def scalar(url: str, statement: str) -> str:
    rows = sql(url, statement)
    assert len(rows) == 1 and len(rows[0]) == 1, rows
    return rows[0][0]


def sqlite_path(url: str) -> str:
    database = make_url(url).database
    assert database, url
    return database


def _sqlite(path: str, statement: str, timeout: float) -> list[tuple[str, ...]]:
    connection = sqlite3.connect(path, timeout=timeout, isolation_level=None)
    try:
        rows = connection.execute(statement).fetchall()
    finally:
        connection.close()
    return [tuple(None if v is None else str(v) for v in row) for row in rows]


def _connect_args(url: str) -> dict[str, Any]:
    parsed = make_url(url)
    return {"host": parsed.host or "127.0.0.1", "port": parsed.port or 5432,
            "user": parsed.username or "postgres", "database": parsed.database or "postgres"}


def _psql(url: str, statement: str, timeout: float) -> list[tuple[str, ...]]:
    args = _connect_args(url)
    command = ["psql", "-h", args["host"], "-p", str(args["port"]), "-U", args["user"],
               "-d", args["database"], "-v", "ON_ERROR_STOP=1", "-X", "-Atq",
               "-F", FIELD_SEPARATOR, "-c", statement]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                            check=False)
    if result.returncode != 0:
        raise RuntimeError(f"psql failed on {statement!r}: {result.stderr.strip()}")
    return [tuple(line.split(FIELD_SEPARATOR)) for line in result.stdout.splitlines()]


class _Sessions:
    """Kept asyncpg connections, on an event loop in a daemon thread: callable from any
    thread, inside a running event loop too (Playwright's, an async test's)."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._start = threading.Lock()
        self._connections: OrderedDict[str, Any] = OrderedDict()

    def select(self, url: str, statement: str, timeout: float) -> list[tuple[str, ...]]:
        # Each row as the server's text of it: the same text `psql` prints per column.
        # (On a line of its own: the statement may end with a -- comment.)
        query = f"SELECT _row::text FROM ({statement.strip().rstrip(';')}\n) AS _row"
        rows = self._run(url, statement, timeout, lambda connection: connection.fetch(
            query, timeout=timeout))
        return [_fields(row[0]) for row in rows]

    def execute(self, url: str, statement: str, timeout: float = 60.0) -> None:
        """A statement that returns no rows (CREATE DATABASE, DROP DATABASE)."""
        self._run(url, statement, timeout, lambda connection: connection.execute(
            statement, timeout=timeout))

    def _run(self, url: str, statement: str, timeout: float,
             run: Callable[[Any], Awaitable[Any]]) -> Any:
        """`run(connection)` on the loop's thread, waited for here."""
        future = asyncio.run_coroutine_threadsafe(
            self._on_a_live_connection(url, timeout, run), self._running_loop())
        try:
            return future.result(timeout + 10)
        except (asyncpg.PostgresError, OSError) as exc:
            raise RuntimeError(f"PostgreSQL failed on {statement!r}: {exc}") from exc

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._start:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="tests.dbsql",
                                 daemon=True).start()
                self._loop = loop
            return self._loop

    async def _on_a_live_connection(self, url: str, timeout: float,
                                    run: Callable[[Any], Awaitable[Any]]) -> Any:
        for last_try in (False, True):
            connection = await self._connection(url, timeout)
            try:
                return await run(connection)
            except (asyncpg.ConnectionDoesNotExistError, asyncpg.InterfaceError,
                    asyncpg.InternalClientError, asyncpg.AdminShutdownError, OSError):
                # A kept connection a test ended (a restart, pg_terminate_backend), which
                # asyncpg may notice only now: the statement goes again on a new one.
                self._connections.pop(url, None)
                connection.terminate()
                if last_try:
                    raise
        raise AssertionError("unreachable")

    async def _connection(self, url: str, timeout: float) -> Any:
        connection = self._connections.get(url)
        if connection is not None and not connection.is_closed():
            self._connections.move_to_end(url)
            return connection
        connection = await asyncpg.connect(**_connect_args(url), timeout=timeout)
        self._connections[url] = connection
        while len(self._connections) > KEPT:
            _, oldest = self._connections.popitem(last=False)
            with contextlib.suppress(Exception):
                await oldest.close(timeout=1)
        return connection


SESSIONS = _Sessions()


def _fields(record: str) -> tuple[str, ...]:
    """The columns of a row's text form, `(a,"b c",,"x""y")`: a field with a comma,
    quote, backslash, parenthesis or space is quoted, and NULL is nothing ("" here, as
    `psql` prints it)."""
    fields: list[str] = []
    inner, i = record[1:-1], 0
    while True:
        if inner[i:i + 1] == '"':
            i += 1
            text: list[str] = []
            while True:
                char = inner[i]
                if char == '"' and inner[i + 1:i + 2] == '"':
                    text.append('"')
                    i += 2
                elif char == '"':
                    i += 1
                    break
                elif char == "\\":
                    text.append(inner[i + 1])
                    i += 2
                else:
                    text.append(char)
                    i += 1
            fields.append("".join(text))
        else:
            end = inner.find(",", i)
            end = len(inner) if end < 0 else end
            fields.append(inner[i:end])
            i = end
        if i >= len(inner):
            return tuple(fields)
        i += 1  # the comma
