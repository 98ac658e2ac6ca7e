"""`open_store(url)`: the configured database URL to a ready `Store`.

    sqlite:///./outbox.db            relative to the working directory
    sqlite:////var/lib/outbox.db     absolute
    postgresql://user@host/db        also postgres://, postgresql+asyncpg://

PostgreSQL URLs are translated to the asyncpg driver; SQLite runs on the
standard sqlite3 module, whole transactions in worker threads (see sqlite.py).
The schema is not touched: call `store.migrate()`.
"""

from __future__ import annotations

from outbox.errors import StorageError
from outbox.store.base import Store
from outbox.store.sql.store import SqlStore
from outbox.store.urls import database_url, safe_url


async def open_store(url: str, *, pool_size: int = 10) -> Store:
    """A store on `url`, after checking that the database can be reached. `pool_size`:
    PostgreSQL connections kept open (as many more in bursts)."""
    parsed = database_url(url)
    store: SqlStore
    if parsed.get_backend_name() == "sqlite":
        from outbox.store import sqlite

        store = sqlite.create_store(parsed)
    else:
        from outbox.store import postgres  # asyncpg only when PostgreSQL is used

        store = postgres.create_store(parsed, pool_size)
    try:
        await store.ping()
    except StorageError as exc:
        await store.close()
        raise StorageError(f"cannot open the database {safe_url(url)}: {exc.message}"
                           ) from exc
    return store
