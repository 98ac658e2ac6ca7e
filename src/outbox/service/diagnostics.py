"""`outbox doctor` and `outbox support-bundle` over the configured database.

Both inspect; neither creates or migrates a database. A SQLite file that does
not exist yet, or a server that cannot be reached, is reported by the checks
instead of opened.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from outbox.config import Settings
from outbox.errors import OutboxError
from outbox.ops.bundle import Member, write_bundle
from outbox.ops.checks import Report
from outbox.ops.doctor import MISSING, run_doctor
from outbox.store.base import Store
from outbox.store.factory import open_store
from outbox.store.urls import missing_sqlite_file


@asynccontextmanager
async def existing_database(settings: Settings) -> AsyncIterator[Store | str]:
    """The open store, or why it cannot be opened without creating it."""
    missing = missing_sqlite_file(settings.database.url)
    if missing:
        yield f"{missing} {MISSING}"
        return
    try:
        store = await open_store(settings.database.url,
                                 pool_size=settings.database.pool_size)
    except OutboxError as exc:
        yield f"the database is unreachable: {exc.message}"
        return
    try:
        yield store
    finally:
        await store.close()


async def doctor(settings: Settings) -> Report:
    async with existing_database(settings) as database:
        return await run_doctor(settings, database)


async def support_bundle(settings: Settings, output: Path, *,
                         log_lines: int = 1000) -> list[Member]:
    async with existing_database(settings) as database:
        return await write_bundle(settings, database, output, log_lines=log_lines)
