"""`open_store(url)`: the configured database URL to a ready `Store`.

    sqlite:///./outbox.db            relative to the working directory
    sqlite:////var/lib/outbox.db     absolute
    postgresql://user@host/db        also postgres://, postgresql+asyncpg://

PostgreSQL URLs are translated to the asyncpg driver; SQLite runs on the
standard sqlite3 module, whole transactions in worker threads (see sqlite.py).
The schema is not touched: call `Store.migrate()`.
"""

from __future__ import annotations

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from outbox.errors import ConfigError, StorageError
from outbox.store.base import Store
from outbox.store.sql import SqlStore

POSTGRES_NAMES = {"postgresql", "postgres"}


async def open_store(url: str) -> Store:
    """A store on `url`, after checking that the database can be reached."""
    parsed = database_url(url)
    store: SqlStore
    if parsed.get_backend_name() == "sqlite":
        from outbox.store import sqlite

        store = sqlite.SqliteStore(sqlite.create_engine(parsed))
    else:
        from outbox.store import postgres  # asyncpg only when PostgreSQL is used

        store = postgres.PostgresStore(postgres.create_engine(parsed))
    try:
        await store.ping()
    except StorageError as exc:
        await store.close()
        where = parsed.render_as_string(hide_password=True)
        raise StorageError(f"cannot open the database {where}: {exc.message}") from exc
    return store


def database_url(url: str) -> URL:
    """The URL with the driver Outbox uses; `ConfigError` naming the key if unusable."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"database.url: not a database URL: {url!r}") from exc
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_url(parsed)
    if backend in POSTGRES_NAMES:
        return _postgres_url(parsed)
    raise ConfigError(f"database.url: unsupported database {backend!r}; "
                      "use sqlite:///path/to/outbox.db or postgresql://user@host/db")


def _sqlite_url(parsed: URL) -> URL:
    if parsed.get_driver_name() not in ("pysqlite", "aiosqlite"):
        raise ConfigError(f"database.url: unsupported SQLite driver {parsed.drivername!r}")
    if not parsed.database or parsed.database == ":memory:":
        raise ConfigError("database.url: an in-memory SQLite database is not durable; "
                          "give a file, e.g. sqlite:///./outbox.db")
    return parsed.set(drivername="sqlite+pysqlite")


def _postgres_url(parsed: URL) -> URL:
    query = dict(parsed.query)
    if "sslmode" in query:  # libpq's spelling; asyncpg calls it ssl
        query.setdefault("ssl", query.pop("sslmode"))
    return parsed.set(drivername="postgresql+asyncpg", query=query)
