"""The contract suite's databases: every test runs on SQLite and on PostgreSQL.

Each test gets a fresh, already migrated database: SQLite copies a template
file; PostgreSQL clones a template database (`CREATE DATABASE ... TEMPLATE`)
made once per session. PostgreSQL is required: if it cannot be reached the
suite fails, it never skips.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from outbox.store.base import Store
from outbox.store.factory import open_store
from tests.pg import migrate
from tests.pg import sqlite_template as migrated_sqlite_file

PG_URL = os.environ.get("OUTBOX_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
BACKENDS = ["sqlite", "postgresql"]

OpenStore = Callable[[], Awaitable[Store]]
EmptyDatabase = Callable[[], Awaitable[str]]


def pg_url(database: str) -> str:
    return make_url(PG_URL).set(database=database).render_as_string(hide_password=False)


async def pg_admin(*statements: str) -> None:
    try:
        conn = await asyncpg.connect(PG_URL)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(f"the contract suite needs PostgreSQL at {PG_URL} "
                    f"(set OUTBOX_TEST_POSTGRES): {exc}", pytrace=False)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


class PgClones:
    """Clones of the migrated template, made a few at a time ahead of the tests
    that need them and dropped in the background: PostgreSQL groups their
    commits, and tests rarely wait for a database."""

    def __init__(self, needed: int, ahead: int = 4) -> None:
        self.template = f"outbox_template_{os.getpid()}"
        self._drop_template = f'DROP DATABASE IF EXISTS "{self.template}" WITH (FORCE)'
        asyncio.run(pg_admin(self._drop_template, f'CREATE DATABASE "{self.template}"'))
        asyncio.run(migrate(pg_url(self.template)))
        self._workers = ThreadPoolExecutor(max_workers=ahead, thread_name_prefix="pg-clones")
        self._to_create = needed
        self._ready: deque[Future[str]] = deque()
        self._drops: list[Future[None]] = []
        for _ in range(ahead):
            self._schedule()

    def _schedule(self) -> None:
        if self._to_create > 0:
            self._to_create -= 1
            self._ready.append(self._workers.submit(self._create))

    def _create(self) -> str:
        name = f"t_{secrets.token_hex(6)}"
        asyncio.run(pg_admin(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"'))
        return name

    def take(self) -> str:
        if not self._ready:  # more takers than counted at collection
            self._to_create += 1
            self._schedule()
        name = self._ready.popleft().result()
        self._schedule()
        return name

    def drop(self, name: str) -> None:
        statement = f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
        self._drops.append(self._workers.submit(lambda: asyncio.run(pg_admin(statement))))

    def close(self) -> None:
        for future in self._ready:
            with contextlib.suppress(Exception):
                self.drop(future.result())
        wait(self._drops)
        self._workers.shutdown(wait=True)
        asyncio.run(pg_admin(self._drop_template))


@pytest.fixture(scope="session")
def pg_clones(request: pytest.FixtureRequest) -> Iterator[PgClones]:
    needed = sum(1 for item in request.session.items if _wants_pg_clone(item))
    clones = PgClones(needed)
    yield clones
    clones.close()


def _wants_pg_clone(item: pytest.Item) -> bool:
    callspec = getattr(item, "callspec", None)
    return (callspec is not None and callspec.params.get("backend") == "postgresql"
            and "db_url" in getattr(item, "fixturenames", ()))


@pytest.fixture(scope="session")
def sqlite_template() -> Path:
    return migrated_sqlite_file()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated database of its own for this test."""
    if backend == "sqlite":
        path = tmp_path / "outbox.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    clones: PgClones = request.getfixturevalue("pg_clones")
    name = clones.take()
    yield pg_url(name)
    clones.drop(name)


@pytest.fixture
async def empty_databases(backend: str, tmp_path: Path) -> AsyncIterator[EmptyDatabase]:
    """Make databases with no schema at all; each call gives a new one."""
    made: list[str] = []

    async def make() -> str:
        name = f"e_{secrets.token_hex(6)}"
        if backend == "sqlite":
            return f"sqlite:///{tmp_path / name}.db"
        await pg_admin(f'CREATE DATABASE "{name}" TEMPLATE template0')
        made.append(name)
        return pg_url(name)

    yield make
    if made:
        await pg_admin(*(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)' for name in made))


@pytest.fixture
async def open_stores(db_url: str) -> AsyncIterator[OpenStore]:
    """Open more stores (each with its own engine) on this test's database."""
    opened: list[Store] = []

    async def open_one() -> Store:
        opened.append(await open_store(db_url))
        return opened[-1]

    yield open_one
    for store in opened:
        await store.close()


@pytest.fixture
async def store(open_stores: OpenStore) -> Store:
    return await open_stores()
