"""SQLite's page cache: 8 MB on every connection of the store, the writer's and the
readers' (store/sqlite.py: a claim stayed flat up to a million queued messages only
with it; bench/scale.py measures that)."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import Connection

from outbox.store.base import Store


def cache_size(conn: Connection) -> int:
    return int(conn.exec_driver_sql("PRAGMA cache_size").scalar() or 0)


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_every_connection_keeps_8_mb_of_pages(store: Store) -> None:
    run = store._run  # type: ignore[attr-defined]
    readers = await asyncio.gather(*(run.read(cache_size) for _ in range(8)))

    assert set(readers) == {-8192}
    assert await run.write(cache_size) == -8192
