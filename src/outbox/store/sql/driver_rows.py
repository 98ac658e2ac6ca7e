"""Many rows handed to the database driver as they are, past SQLAlchemy's processing of
every parameter of every row (a big message's recipients, events and address usage,
issue 17): PostgreSQL takes one array per column, read back with `unnest`; SQLite
plain tuples through the driver's executemany.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ARRAY, BindParameter, Column, Connection, DateTime, TextClause, bindparam
from sqlalchemy.exc import StatementError
from sqlalchemy.types import TypeEngine

from outbox.store.sql.bound_lists import is_postgres
from outbox.store.tables import messages

Columns = Sequence[tuple[str, TypeEngine[Any]]]
TIME = DateTime(timezone=True)  # a UtcDateTime column, in `Columns`


def array_casts(columns: Columns) -> str:
    """`CAST(:name AS type[]), ...`, for `unnest(...)`. Call it when building a statement
    on first use: PostgreSQL's dialect, which compiles the types, loads only on
    PostgreSQL."""
    from sqlalchemy.dialects import postgresql

    pg = postgresql.dialect()
    return ", ".join(f"CAST(:{name} AS {kind.compile(dialect=pg)}[])" for name, kind in columns)


def array_params(columns: Columns) -> list[BindParameter[Any]]:
    """The bound parameters of `array_casts(columns)`."""
    return [bindparam(name, type_=ARRAY(kind)) for name, kind in columns]


def from_arrays(columns: Columns) -> str:
    """`unnest(...) AS u(name, ...)`: the rows of `write_rows`, for an UPDATE's FROM."""
    names = ", ".join(name for name, _ in columns)
    return f"unnest({array_casts(columns)}) AS u({names})"


def where_clause(condition: str) -> str:
    """` WHERE condition`, or nothing for no condition: the rows of an INSERT from arrays
    that a statement writes only if its condition holds (sql/group_insert.py)."""
    return f" WHERE {condition}" if condition else ""


def prefixed(prefix: str, columns: Columns) -> Columns:
    """The columns under parameter names that begin with `prefix`: the arrays of
    several tables in one statement (sql/group_insert.py), where column names repeat."""
    return tuple((f"{prefix}{name}", kind) for name, kind in columns)


def arrays(columns: Columns, found: Sequence[tuple[Any, ...]]) -> dict[str, list[Any]]:
    """One list per column of `found` (tuples in the order of `columns`), by the
    columns' names: PostgreSQL's parameters for `array_casts(columns)`. A DateTime
    column holds UtcDateTime values."""
    return {name: [utc(row[i]) for row in found] if isinstance(kind, DateTime)
            else [row[i] for row in found] for i, (name, kind) in enumerate(columns)}


def write_rows(conn: Connection, found: list[tuple[Any, ...]], sqlite: str,
               postgres: Callable[[], TextClause], columns: Columns) -> None:
    """`found`, tuples in the order of `columns`, in one statement: on PostgreSQL
    `postgres()` given one array per column, on SQLite `sqlite` (with a `?` per column)
    through the driver's executemany. A DateTime column holds UtcDateTime values."""
    if not found:
        return
    if is_postgres(conn):
        conn.execute(postgres(), arrays(columns, found))
        return
    times = [i for i, (_, kind) in enumerate(columns) if isinstance(kind, DateTime)]
    if times:  # SQLite keeps a UtcDateTime as text
        as_text = stored_form(conn, messages.c.updated_at)
        found = [tuple(as_text(v) if i in times else v for i, v in enumerate(row))
                 for row in found]
    sqlite_many(conn, sqlite, found)


def sqlite_many(conn: Connection, sql: str, found: Sequence[tuple[Any, ...]]) -> None:
    """SQLite: `sql` once for each row of `found`, by the sqlite3 connection itself, in
    the transaction under way. SQLAlchemy's exec_driver_sql cost 19 us for ten rows, this
    8 (a loop of 3,000), and the writer runs these inside the write turn; the driver's
    errors reach callers as SQLAlchemy's do (runner.translate_errors)."""
    conn.connection.driver_connection.executemany(sql, found)  # type: ignore[union-attr]


def stored_form(conn: Connection, column: Column[Any]) -> Callable[[Any], Any]:
    """What SQLAlchemy would store for a value of `column` on `conn` (SQLite keeps a
    time as text): the column's own bind processor, or the value as it is. A value the
    processor refuses (a naive time) raises SQLAlchemy's StatementError, as executing
    it would: runner.translate_errors makes that a StorageError."""
    process = column.type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
    if process is None:
        return lambda value: value

    def checked(value: Any) -> Any:
        try:
            return process(value)
        except ValueError as exc:
            raise StatementError(f"{column.name}: {exc}", None, None, exc) from exc
    return checked


def utc(at: datetime | None) -> datetime | None:
    """A time for a `timestamptz` array: in UTC (asyncpg takes it as it is); naive ones
    are refused, as `UtcDateTime` refuses them."""
    if at is None:
        return None
    if at.tzinfo is None:
        raise ValueError(f"a timezone-aware datetime is required, not {at!r}")
    return at.astimezone(UTC)
