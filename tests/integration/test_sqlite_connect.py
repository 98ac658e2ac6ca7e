"""Opening a connection to an SQLite database never waits for another's write lock
(store/sqlite.py): `PRAGMA auto_vacuum=INCREMENTAL`, run on every connection, took the
write lock, so each new connection (a reader's too) waited for whatever transaction held
it, up to the 30 s busy timeout; a serve starting beside a restore hung silently (found
by a stranger pass). The pragma only ever mattered on a file without tables: it is set
there alone. Real SQLite files."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from outbox.store import sqlite


def _connect(path: Path) -> sqlite3.Connection:
    """A connection as Outbox makes one, that gives up on a lock after 0.1 s."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=0.1)
    sqlite._on_connect(conn, None)  # type: ignore[arg-type]
    return conn


def test_a_new_connection_does_not_wait_for_a_writer(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    first = _connect(path)
    first.execute("CREATE TABLE t (n INTEGER)")
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO t VALUES (1)")
    try:
        reader = _connect(path)  # raised "database is locked" before
        assert reader.execute("SELECT count(*) FROM t").fetchone() == (0,)
        reader.close()
    finally:
        writer.rollback()
        writer.close()
        first.close()


def test_a_new_file_still_gets_incremental_auto_vacuum(tmp_path: Path) -> None:
    conn = _connect(tmp_path / "new.db")
    conn.execute("CREATE TABLE t (n INTEGER)")
    assert conn.execute("PRAGMA auto_vacuum").fetchone() == (2,)
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    conn.close()
    old = sqlite3.connect(tmp_path / "old.db")  # made without it: left as it is
    old.execute("CREATE TABLE t (n INTEGER)")
    old.close()
    again = _connect(tmp_path / "old.db")
    assert again.execute("PRAGMA auto_vacuum").fetchone() == (0,)
    again.close()
