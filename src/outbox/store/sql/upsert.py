"""`upsert(conn, table)`: the INSERT of the connection's dialect, the one with
`on_conflict_do_nothing` and `on_conflict_do_update` (PostgreSQL's or SQLite's).

The dialect's module loads here, on first use, never at import: PostgreSQL's costs
some 90 ms of every `outbox` command that opens a SQLite database.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection


def upsert(conn: Connection, table: Any) -> Any:
    """`insert(table)` of the dialect `conn` speaks."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table)
    from sqlalchemy.dialects import sqlite

    return sqlite.insert(table)
