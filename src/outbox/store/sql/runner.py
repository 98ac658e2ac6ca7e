"""`Runner`: the one way the SQL classes reach the database, one transaction per call.

`read(body, *args)` runs `body(conn, *args)` in a read transaction and returns
what it returns; `write(body, *args)` does the same in a write transaction,
committed durably before it returns (`write_alone`: a body of one writing
statement, which PostgreSQL commits on its own). A body is a plain function of one
`Connection` (see sql/queries.py) that returns domain values, never rows.

The backend supplies the runner: SQLite hands the whole transaction to a
thread in one hop (sqlite.py), PostgreSQL drives it on asyncpg with `run_sync`
(postgres.py). Either way every foreign exception is translated once, in
`translate_errors`: constraint violations become `Conflict`, a database that cannot
be reached right now `DatabaseUnavailable` (sql/outage.py), other database and OS
errors `StorageError`; Outbox's own errors pass through. The driver's own errors
are translated too, from a body that reads through it past SQLAlchemy (on SQLite,
sql/webhook_events.py's subscriptions).
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Concatenate, ParamSpec, Protocol, TypeVar

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from outbox.errors import CommitUncertain, Conflict, DatabaseUnavailable, StorageError
from outbox.store.sql.outage import unreachable

P = ParamSpec("P")
T = TypeVar("T")
Body = Callable[Concatenate[Connection, P], T]


class Runner(Protocol):
    """Runs transaction bodies; supplied by the backend."""

    # Whether write transactions run side by side (PostgreSQL) rather than one at a
    # time on one thread (SQLite): sql/group_commit.py commits a big message alone then.
    parallel_writes: bool

    async def read(self, body: Body[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`body(conn, ...)` in a read transaction."""
        ...

    async def write(self, body: Body[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`body(conn, ...)` in a write transaction, committed durably on return."""
        ...

    async def write_first(self, body: Body[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`write` for a client that waits on it (an enqueue): where writes queue for one
        thread (SQLite), ahead of those waiting that no client waits on."""
        ...

    async def write_alone(self, body: Body[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`write_first` for a body of one writing statement: PostgreSQL runs it in
        autocommit, where the statement's own commit is as durable and BEGIN and COMMIT
        would only cost two round trips (sql/group_commit.py); SQLite as `write_first`."""
        ...

    async def close(self) -> None:
        """Wait for the transactions under way, then release the connections."""
        ...


def _never(exc: BaseException) -> bool:
    return False


@asynccontextmanager
async def translate_errors(*, may_have_committed: Callable[[BaseException], bool] = _never
                           ) -> AsyncIterator[None]:
    """SQLAlchemy and driver errors become `StorageError` (constraint
    violations `Conflict`, an unreachable database `DatabaseUnavailable`), whether
    SQLAlchemy wrapped them or not; Outbox's own errors pass through.
    `may_have_committed`: around a commit, or a statement that commits itself, whether
    the database may have run what this error interrupted; then a lost connection is
    `CommitUncertain`, since nothing tells whether the commit happened."""
    try:
        yield
    except (IntegrityError, sqlite3.IntegrityError) as exc:
        raise Conflict(f"the database refused the change: {_reason(exc)}") from exc
    except (SQLAlchemyError, sqlite3.Error, OSError) as exc:
        reason = _reason(exc)
        if unreachable(exc) and may_have_committed(exc):
            raise CommitUncertain(f"the connection to the database was lost while "
                                  f"committing ({reason}): this may be stored") from exc
        if unreachable(exc):
            raise DatabaseUnavailable(f"the database is unavailable ({reason})",
                                      hint=_hint(reason)) from exc
        raise StorageError(f"database error: {reason}", hint=_hint(reason)) from exc


def _hint(reason: str) -> str | None:
    """A next step for the failures whose cause the message names; else the default."""
    if "database is locked" in reason:
        return ("another process holds SQLite's write lock (a long transaction, a backup "
                "tool?); Outbox waits and tries again")
    if "read-only" in reason or "readonly" in reason:
        return "the database takes no writes: check the file's permissions or the server's role"
    return None


def _reason(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()
    return f"{type(orig).__name__}: {text[0]}" if text else type(orig).__name__
