"""Which database failures mean "not reachable right now": retried in a few seconds, the
same request may well succeed, and the failed one did not run (runner.translate_errors
makes them `DatabaseUnavailable`, HTTP 503). Everything else stays a `StorageError`
(a 500): a bug, a constraint nobody expected, a full or failing disk.

Decided from the exception's types and SQLSTATEs, along the chain SQLAlchemy and the
SQLAlchemy asyncpg adapter wrap around the driver's error, never from its wording:

- no connection at all: refused, reset, timed out, a name that does not resolve, or the
  pool's own timeout (every connection busy for `pool_timeout`);
- PostgreSQL saying "not now": class 08 (connection exception), 57P01 admin shutdown
  (a fast shutdown or pg_terminate_backend), 57P02 crash shutdown, 57P03 cannot connect
  now (shutting down, starting up, recovering), 53300 too many connections;
- a connection SQLAlchemy found dead and invalidated mid-operation
  (`DBAPIError.connection_invalidated`): the asyncpg adapter asks asyncpg whether the
  connection is closed, which also covers asyncpg's "cannot switch to state 12; another
  operation (2) is in progress", from a pooled connection whose FATAL arrived before its
  close (MagicStack/asyncpg#1069): asyncpg aborts that connection and sends nothing;
- SQLite busy (SQLITE_BUSY, "database is locked") past the busy timeout: another process
  holds the write lock, and lets go.

Not transient: SQLite's disk I/O error, a full disk, a read-only file or server, a
missing database, refused credentials; an operator has to act, so they stay 500s.
"""

from __future__ import annotations

import socket
import sqlite3
from collections.abc import Iterator

from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

NOT_NOW_STATES = frozenset({"57P01", "57P02", "57P03", "53300"})
NO_CONNECTION = (ConnectionError, TimeoutError, socket.gaierror, PoolTimeout)


def unreachable(exc: BaseException) -> bool:
    """Whether `exc` says the database could not be reached or answered "not now"."""
    return any(_says_unreachable(link) for link in causes(exc))


def causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc`, then what it wraps: SQLAlchemy's `orig`, then each `__cause__`."""
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        yield link
        wrapped = getattr(link, "orig", None)
        link = wrapped if isinstance(wrapped, BaseException) else link.__cause__


def _says_unreachable(link: BaseException) -> bool:
    if isinstance(link, DBAPIError) and link.connection_invalidated:
        return True
    if isinstance(link, NO_CONNECTION):
        return True
    if isinstance(link, sqlite3.Error):
        return getattr(link, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_BUSY
    state = getattr(link, "sqlstate", None)
    return isinstance(state, str) and (state.startswith("08") or state in NOT_NOW_STATES)
