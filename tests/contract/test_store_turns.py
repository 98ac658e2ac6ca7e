"""A write that walks a big message's rows does not hold the event loop (issue 17):
on PostgreSQL its Python runs on the loop, and `in_turns` hands other tasks a turn
every CHUNK rows; on SQLite it runs on the writer thread, off the loop."""

from __future__ import annotations

import asyncio
import threading

from sqlalchemy import Connection

from outbox.store.base import Store
from outbox.store.sql.turns import CHUNK, in_turns


async def test_other_tasks_run_while_a_write_walks_many_rows(store: Store, backend: str
                                                              ) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    seen: list[tuple[int, int]] = []  # (item, ticks when it came)

    def walk(conn: Connection) -> str:
        for item in in_turns(range(4 * CHUNK)):
            seen.append((item, ticks))
        return threading.current_thread().name

    ticking = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    ran_on = await store._run.write(walk)  # type: ignore[attr-defined]
    ticking.cancel()

    assert [item for item, _ in seen] == list(range(4 * CHUNK))
    if backend == "postgresql":
        assert ran_on == threading.current_thread().name  # the loop's own thread
        # The ticker ran between every CHUNK rows, and never inside one.
        turns = [seen[n][1] for n in range(0, 4 * CHUNK, CHUNK)]
        assert turns == sorted(set(turns)), turns
        assert all(seen[n][1] == seen[n - n % CHUNK][1] for n in range(4 * CHUNK))
    else:
        assert ran_on != threading.current_thread().name  # the writer's thread
