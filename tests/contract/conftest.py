"""The contract suite's databases: every test runs on SQLite and on PostgreSQL.

Each test gets a fresh, already migrated database: SQLite copies a template
file; PostgreSQL clones a template database (`CREATE DATABASE ... TEMPLATE`)
made once per session. PostgreSQL is required: if it cannot be reached the
suite fails, it never skips.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import asyncpg
import pytest

from outbox.store.base import Store
from outbox.store.factory import open_store

PG_URL = os.environ.get("OUTBOX_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
BACKENDS = ["sqlite", "postgresql"]

OpenStore = Callable[[], Awaitable[Store]]


def pg_url(database: str) -> str:
    return PG_URL.rsplit("/", 1)[0] + f"/{database}"


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


async def migrate(url: str) -> None:
    store = await open_store(url)
    try:
        await store.migrate()
    finally:
        await store.close()


@pytest.fixture(scope="session")
def postgresql_template() -> Iterator[str]:
    name = f"outbox_template_{os.getpid()}"
    drop = f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
    asyncio.run(pg_admin(drop, f'CREATE DATABASE "{name}"'))
    asyncio.run(migrate(pg_url(name)))
    yield name
    asyncio.run(pg_admin(drop))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "outbox.db"
    asyncio.run(migrate(f"sqlite:///{path}"))
    return path


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def template(backend: str, request: pytest.FixtureRequest) -> str:
    """The session's migrated template (resolved outside the event loop)."""
    return str(request.getfixturevalue(f"{backend}_template"))


@pytest.fixture
async def db_url(backend: str, template: str, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, migrated database of its own for this test."""
    if backend == "sqlite":
        path = tmp_path / "outbox.db"
        shutil.copyfile(template, path)
        yield f"sqlite:///{path}"
        return
    name = f"t_{secrets.token_hex(6)}"
    await pg_admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    try:
        yield pg_url(name)
    finally:
        await pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def empty_url(backend: str, tmp_path: Path) -> AsyncIterator[str]:
    """A database with no schema at all."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    name = f"e_{secrets.token_hex(6)}"
    await pg_admin(f'CREATE DATABASE "{name}" TEMPLATE template0')
    try:
        yield pg_url(name)
    finally:
        await pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


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
