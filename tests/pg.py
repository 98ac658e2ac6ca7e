"""Databases for tests: throw-away PostgreSQL ones on the machine's server (127.0.0.1:5432,
trust auth), and migrated templates of both backends to copy from."""

from __future__ import annotations

import asyncio
import atexit
import functools
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from tests.dbsql import SESSIONS

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_ADMIN = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-v",
            "ON_ERROR_STOP=1", "-Atqc"]


def psql(sql: str) -> str:
    if sql.startswith(("CREATE DATABASE", "DROP DATABASE")):  # most calls: no psql run
        try:
            SESSIONS.execute(ADMIN_URL, sql)
        except RuntimeError as exc:
            raise RuntimeError(f"PostgreSQL is required for this test and failed: {exc}"
                               ) from exc
        return ""
    return _psql(sql)


def _psql(sql: str) -> str:
    result = subprocess.run([*PG_ADMIN, sql], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"PostgreSQL is required for this test and failed: {result.stderr}")
    return result.stdout


def socket_directory() -> str:
    """Where the server's Unix socket is (the first of unix_socket_directories)."""
    return psql("SHOW unix_socket_directories").strip().split(",")[0].strip()


@contextmanager
def fresh_database(prefix: str = "outbox_e2e", over_socket: bool = False) -> Iterator[str]:
    """An empty database; yields its URL and drops it afterwards. `over_socket`: a URL
    that reaches the server over its Unix socket rather than TCP on 127.0.0.1, as a
    PostgreSQL on the same machine is best reached (libpq's default)."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    psql(f'CREATE DATABASE "{name}"')
    try:
        yield (f"postgresql://postgres@/{name}?host={socket_directory()}" if over_socket
               else f"postgresql://postgres@127.0.0.1:5432/{name}")
    finally:
        psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def database(kind: str, directory: Path) -> Iterator[str]:
    """A database URL for a test, already migrated to the head: a SQLite file in
    `directory` copied from a template, or a fresh PostgreSQL database cloned from one.
    Each `outbox serve` of the e2e and UI suites would otherwise run every migration
    first (0.2 s of CPU and a dozen fsyncs on SQLite, per test); the start on an empty
    database is tested where it is the subject (tests/contract
    test_store_schema.py, tests/integration/test_cli_database_paths.py)."""
    if kind == "sqlite":
        shutil.copyfile(sqlite_template(), directory / "outbox.db")
        yield f"sqlite:///{directory}/outbox.db"
        return
    name = f"outbox_e2e_{secrets.token_hex(4)}"
    psql(f'CREATE DATABASE "{name}" TEMPLATE "{_postgres_template()}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def migrate(url: str) -> None:
    """Run every migration on the database at `url` (the contract suite's templates too)."""
    from outbox.store.factory import open_store

    store = await open_store(url)
    try:
        await store.migrate()
    finally:
        await store.close()


def _migrate(url: str) -> None:
    # In a thread of its own: the caller may be inside an event loop (Playwright's).
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, migrate(url)).result()


@functools.cache
def sqlite_template() -> Path:
    """A migrated SQLite file, made once per test process; copy it, never open it."""
    directory = Path(tempfile.mkdtemp(prefix="outbox-template-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    _migrate(f"sqlite:///{directory}/outbox.db")
    return directory / "outbox.db"


@functools.cache
def _postgres_template() -> str:
    """One per test process (a template may not be in use while it is cloned)."""
    name = f"outbox_template_e2e_{os.getpid()}"
    drop = f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
    psql(drop)
    psql(f'CREATE DATABASE "{name}"')
    atexit.register(_psql, drop)  # by psql: at exit, no thread to count on
    _migrate(f"postgresql://postgres@127.0.0.1:5432/{name}")
    return name
