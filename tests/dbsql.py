"""Plain SQL on a test's database, from outside any `outbox` process: to look at
the queue while no process is running (after `kill -9`), to count events in bulk,
and to break the database on purpose (fault tests).

    rows = sql(url, "SELECT id FROM messages WHERE status = 'sending'")

PostgreSQL goes through `psql` (the driver the product uses is async-only);
SQLite through the sqlite3 module, waiting up to `timeout` for a lock.
"""

from __future__ import annotations

import sqlite3
import subprocess

from sqlalchemy.engine import make_url

FIELD_SEPARATOR = "\x1f"


def sql(url: str, statement: str, timeout: float = 30.0) -> list[tuple[str, ...]]:
    """Run one statement; rows as tuples of text (None for NULL on SQLite)."""
    if url.startswith("sqlite"):
        return _sqlite(sqlite_path(url), statement, timeout)
    return _postgres(url, statement, timeout)


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


def _postgres(url: str, statement: str, timeout: float) -> list[tuple[str, ...]]:
    parsed = make_url(url)
    command = ["psql", "-h", parsed.host or "127.0.0.1", "-p", str(parsed.port or 5432),
               "-U", parsed.username or "postgres", "-d", parsed.database or "postgres",
               "-v", "ON_ERROR_STOP=1", "-X", "-Atq", "-F", FIELD_SEPARATOR, "-c", statement]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                            check=False)
    if result.returncode != 0:
        raise RuntimeError(f"psql failed on {statement!r}: {result.stderr.strip()}")
    return [tuple(line.split(FIELD_SEPARATOR)) for line in result.stdout.splitlines()]
