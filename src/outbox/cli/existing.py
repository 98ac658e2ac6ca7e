"""The database a command may open. Only `serve` and `worker` create a database; every
other command refuses a missing SQLite file in one line and creates nothing.
`migrate` may give an existing database Outbox's tables (an empty SQLite file, an empty
PostgreSQL database: the database itself exists); any other command refuses one without
them (an empty file, another program's database, an empty PostgreSQL database), in one
line, and writes nothing to it. A command that writes may upgrade an older Outbox schema
(`migrate=True` in `with_outbox`): the database is Outbox's already, and serve would
upgrade it too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from outbox.errors import StorageError

if TYPE_CHECKING:
    from outbox.config import Settings
    from outbox.service import Outbox


async def open_outbox(settings: Settings, *, migrate: bool, create_tables: bool) -> Outbox:
    """The service, on a database `refuse_missing_database` passed. With `create_tables`
    (`outbox migrate`), as `Outbox.open`; otherwise a SQLite file is known to hold
    Outbox's tables by then, PostgreSQL's are looked for once connected, before any
    write."""
    from outbox.service import Outbox
    from outbox.store.urls import database_url, safe_url

    if create_tables or database_url(settings.database.url).get_backend_name() == "sqlite":
        return await Outbox.open(settings, migrate=migrate)
    outbox = await Outbox.open(settings, migrate=False)
    try:
        info = await outbox.store.describe_database()
    except BaseException:
        await outbox.close()
        raise
    if info.revision is not None and not migrate:
        return outbox
    await outbox.close()
    if info.revision is None:
        raise no_outbox_tables(safe_url(settings.database.url))
    return await Outbox.open(settings, migrate=True)  # as before: writable? upgraded


def refuse_missing_database(settings: Settings, *, create_tables: bool = False) -> None:
    """A one-line error naming the SQLite file looked for, when it does not exist or
    (unless `create_tables`) holds no Outbox tables (read without writing: the file may
    be another program's)."""
    from outbox.store.urls import missing_sqlite_file  # not ops.doctor: its SMTP and TLS

    missing = missing_sqlite_file(settings.database.url)
    if missing:
        raise StorageError(f"no database at {missing}: `outbox serve` or `outbox worker` "
                           "creates it", hint="or point --config / [database] url at the "
                           "existing one")
    path = sqlite_path(settings.database.url)
    if not create_tables and path is not None and sqlite_revision(path) is None:
        raise no_outbox_tables(path)


def no_outbox_tables(where: str) -> StorageError:
    return StorageError(f"{where} holds no Outbox tables",
                        hint="point --config / [database] url at Outbox's database; if this "
                             "one is meant for Outbox, run `outbox migrate` to create them")


def sqlite_path(url: str) -> str | None:
    """The file of a SQLite URL; None for PostgreSQL."""
    from outbox.store.urls import database_url

    parsed = database_url(url)
    return parsed.database if parsed.get_backend_name() == "sqlite" else None


def sqlite_revision(path: str) -> str | None:
    """The Outbox schema revision recorded in the SQLite file at `path` (opened without
    creating it, only read: closing removes the journal files a reader of a WAL file
    makes); None when the file holds no Outbox tables (empty, or another program's)."""
    import sqlite3
    from contextlib import closing
    from urllib.parse import quote

    try:
        with closing(sqlite3.connect(f"file:{quote(path)}?mode=rw", uri=True,
                                     timeout=5)) as conn:
            if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' "
                            "AND name = 'alembic_version'").fetchone() is None:
                return None
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error as exc:
        raise StorageError(f"cannot read the database {path}: {exc}",
                           hint="check that it is Outbox's SQLite file and readable") from exc
    return str(row[0]) if row else None
