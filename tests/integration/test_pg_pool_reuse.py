"""PostgreSQL's pool hands out the connection used last (store/postgres.py): a serve
that opened many connections at its start (or in a burst) keeps working on the few it
needs, whose prepared statements are warm, instead of going round every one of them
and preparing each statement on each. Real PostgreSQL (the machine's server)."""

from __future__ import annotations

import asyncio

from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url
from tests.pg import fresh_database

from outbox.store.postgres import PostgresRunner, create_engine


def _backend_pid(conn: Connection) -> int:
    return int(conn.execute(text("SELECT pg_backend_pid(), pg_sleep(0.05)")).scalar_one())


async def test_one_request_at_a_time_after_a_burst_reuses_one_connection() -> None:
    with fresh_database("outbox_pool") as url:
        runner = PostgresRunner(create_engine(make_url(url).set(
            drivername="postgresql+asyncpg")))
        try:
            # A burst opens several connections, as serve's start-up and 20 clients do.
            burst = await asyncio.gather(*(runner.read(_backend_pid) for _ in range(6)))
            assert len(set(burst)) == 6
            # Then one at a time (the sleep is only for the burst above to overlap).
            after = [await runner.read(_backend_pid) for _ in range(8)]
            # First in, first out, these went round all six connections.
            assert len(set(after)) == 1, after
        finally:
            await runner.close()
