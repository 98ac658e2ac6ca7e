"""`[database] pool_size` on a real PostgreSQL: a process keeps that many connections
open after a burst (and opens at most twice as many during it), so that nodes x
(2 x pool_size + 1) can be kept under the server's max_connections."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.dbsql import scalar
from tests.pg import database

from outbox.config import Settings
from outbox.store.factory import open_store

OTHERS = ("SELECT count(*) FROM pg_stat_activity "
          "WHERE datname = current_database() AND pid <> pg_backend_pid()")


async def left_open_after_a_burst(url: str, pool_size: int) -> int:
    store = await open_store(url, pool_size=pool_size)
    try:
        await store.migrate()
        await asyncio.gather(*(store.messages.stats() for _ in range(100)))
        return int(await asyncio.to_thread(scalar, url, OTHERS))
    finally:
        await store.close()


async def test_a_process_keeps_to_its_pool_size(tmp_path: Path) -> None:
    with database("postgres", tmp_path) as url:
        small = await left_open_after_a_burst(url, 2)
        default = await left_open_after_a_burst(url, Settings().database.pool_size)
    assert 1 <= small <= 2
    assert default > 2, "the burst needs more than two connections at once"
