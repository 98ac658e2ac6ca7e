"""A delivery worker keeps PostgreSQL's planner statistics in step with the queue
(sql/statistics.py): at the production defaults, mail submitted into a fresh database
gets `messages` analysed by the worker's "statistics" loop, a non-critical one, while
nothing else would (the CI cluster runs without autovacuum)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.pg import database
from tests.processes import wait_until_async
from tests.smtpd import ScriptedServer

from outbox.config import RelaySettings, Settings
from outbox.core.compose import Submission
from outbox.service import Outbox
from outbox.service.messages import BatchItem
from outbox.store.sql.statistics import FLOOR


@pytest.fixture
def db_url(tmp_path: Path) -> Iterator[str]:
    with database("postgresql", tmp_path) as url:
        yield url


async def test_the_worker_analyses_the_queue_once_it_has_grown(db_url: str) -> None:
    with ScriptedServer() as server:
        relay = RelaySettings(name="r", host=server.host, port=server.port, security="none")
        outbox = await Outbox.open(Settings(database={"url": db_url}, relays=[relay],
                                            delivery={"helo_name": "client.test"}))
        analysed: list[tuple[str, ...]] = []
        refresh = outbox.store.retention.refresh_statistics

        async def recorded() -> tuple[str, ...]:
            analysed.append(await refresh())
            return analysed[-1]

        outbox.store.retention.refresh_statistics = recorded  # type: ignore[method-assign]
        worker = outbox.start_delivery()
        task = asyncio.create_task(worker.run())
        try:
            async def messages_analysed() -> bool:
                return any("messages" in tables for tables in analysed)

            # Until it has, at most enough for the inserts alone to pass FLOOR: its deliveries
            # change rows too, and it had analysed `messages` once 600-1,000 were submitted
            # here. Submitting and delivering the rest made the module 8 s of CPU, not 6.
            for start in range(0, FLOOR + 200, 200):
                if await messages_analysed():
                    break
                await outbox.messages.submit_many([BatchItem(Submission(
                    sender="app@example.test", to=f"r{n}@example.test", subject=f"#{n}",
                    text="hello")) for n in range(start, start + 200)])

            await wait_until_async(messages_analysed, "the worker to analyse messages", 30)
        finally:
            worker.stop()
            await asyncio.gather(task, return_exceptions=True)
            await outbox.close()
    assert analysed[0] == ()  # its first look, at start, found an empty queue
    (monitor,) = [m for m in worker.loops if m.state.name == "statistics"]
    assert not monitor.state.critical and monitor.state.total_failures == 0


async def test_on_sqlite_the_worker_runs_no_statistics_loop(tmp_path: Path) -> None:
    """SQLite keeps no generic plans: the loop would only hop to a reader thread."""
    with ScriptedServer() as server, database("sqlite", tmp_path) as url:
        relay = RelaySettings(name="r", host=server.host, port=server.port, security="none")
        outbox = await Outbox.open(Settings(database={"url": url}, relays=[relay],
                                            delivery={"helo_name": "client.test"}))
        worker = outbox.start_delivery()
        task = asyncio.create_task(worker.run())
        try:
            async def started() -> bool:
                return any(m.state.name == "release" and m.state.running for m in worker.loops)

            await wait_until_async(started, "the worker's helper loops to start")
        finally:
            worker.stop()
            await asyncio.gather(task, return_exceptions=True)
            await outbox.close()
    assert "statistics" not in {m.state.name for m in worker.loops}
