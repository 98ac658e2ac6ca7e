"""The planner's statistics kept in step with growth (`store.retention.refresh_statistics`,
sql/statistics.py): PostgreSQL's tables are analysed once they have changed by as many
rows as they held (1,000 at least), and then a submit no longer scans `messages`
whole. SQLite keeps no generic plans: nothing to do there.

PostgreSQL counts a table's changes and scans in its statistics system, which a session
updates when a transaction ends a second or more after its last update (an idle one,
ten seconds later): the tests wait until the counts show the rows they wrote, pinging
through the store's connections meanwhile."""

from __future__ import annotations

import asyncio
import secrets
import time

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from outbox.store.base import IdempotencyClaim, Store
from outbox.store.factory import open_store
from outbox.store.sql.statistics import FLOOR
from tests.contract.support import new_message

POSTGRES_ONLY = pytest.mark.parametrize("backend", ["postgresql"])


async def fill(store: Store, count: int, prefix: str) -> None:
    for start in range(0, count, 200):
        await store.messages.enqueue_many(
            [new_message(id=f"{prefix}{n}", idempotency=IdempotencyClaim("app", f"{prefix}{n}",
                                                                         "hash"))
             for n in range(start, min(start + 200, count))])


async def submit_one_by_one(store: Store, count: int, prefix: str) -> None:
    for n in range(count):
        await store.messages.enqueue(
            new_message(id=f"{prefix}{n}", idempotency=IdempotencyClaim("app", f"{prefix}{n}",
                                                                        "hash")))


async def table_counts(store: Store, db_url: str, inserted: int) -> dict[str, int]:
    """`messages`' counters once they show `inserted` rows added."""
    conn = await asyncpg.connect(db_url)
    try:
        deadline = time.monotonic() + 30
        while True:
            row = await conn.fetchrow(
                "SELECT n_tup_ins, seq_tup_read, analyze_count FROM pg_stat_user_tables "
                "WHERE relname = 'messages'")
            assert row is not None
            if row["n_tup_ins"] >= inserted:
                return dict(row)
            assert time.monotonic() < deadline, f"{inserted} rows added, but {dict(row)}"
            await asyncio.sleep(0.3)
            await store.ping()  # a transaction's end: the session reports its counts
    finally:
        await conn.close()


@POSTGRES_ONLY
async def test_nothing_is_analysed_before_a_table_has_changed_enough(
        store: Store, db_url: str) -> None:
    await fill(store, FLOOR - 100, "m")
    await table_counts(store, db_url, FLOOR - 100)  # the changes are counted

    assert await store.retention.refresh_statistics() == ()


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_sqlite_has_no_statistics_to_keep(store: Store) -> None:
    await fill(store, FLOOR + 200, "m")

    assert await store.retention.refresh_statistics() == ()


@POSTGRES_ONLY
async def test_a_grown_table_is_analysed_once_until_it_grows_as_much_again(
        store: Store, db_url: str) -> None:
    await fill(store, FLOOR + 200, "m")
    await table_counts(store, db_url, FLOOR + 200)

    analysed = await store.retention.refresh_statistics()

    assert {"messages", "recipients", "events"} <= set(analysed), analysed
    assert (await table_counts(store, db_url, FLOOR + 200))["analyze_count"] == 1
    assert await store.retention.refresh_statistics() == ()
    await fill(store, FLOOR + 100, "n")  # fewer rows than the table held when analysed
    await table_counts(store, db_url, 2 * FLOOR + 300)
    assert "messages" not in await store.retention.refresh_statistics()
    await fill(store, 200, "o")  # now as many as it held
    await table_counts(store, db_url, 2 * FLOOR + 500)
    assert "messages" in await store.retention.refresh_statistics()


@POSTGRES_ONLY
async def test_after_the_analysis_a_submit_no_longer_scans_the_whole_queue(
        store: Store, db_url: str) -> None:
    """The plan the idempotency guard of a submit (sql/group_insert.py) keeps from its
    first runs, on an empty table, reads every row of `messages` each time; after the
    analysis it reads none. One at a time, the submits go over one pooled connection,
    where asyncpg keeps the statement prepared."""
    await submit_one_by_one(store, 8, "first")
    rows = 3000
    await fill(store, rows, "m")
    before = await table_counts(store, db_url, rows + 8)

    await submit_one_by_one(store, 10, "before")
    scanned = await table_counts(store, db_url, rows + 18)
    analysed = await store.retention.refresh_statistics()
    await submit_one_by_one(store, 10, "after")
    after = await table_counts(store, db_url, rows + 28)

    assert "messages" in analysed
    assert scanned["seq_tup_read"] - before["seq_tup_read"] >= 10 * rows
    assert after["seq_tup_read"] - scanned["seq_tup_read"] < rows


async def analyze_counts(db_url: str) -> dict[str, int]:
    conn = await asyncpg.connect(db_url)
    try:
        rows = await conn.fetch("SELECT relname, analyze_count FROM pg_stat_user_tables")
        return {row["relname"]: row["analyze_count"] for row in rows}
    finally:
        await conn.close()


@POSTGRES_ONLY
async def test_a_table_locked_by_another_session_is_skipped_not_waited_for(
        store: Store, db_url: str) -> None:
    """A VACUUM or a migration holding `messages` must not hang the workers' loop."""
    await fill(store, FLOOR + 200, "m")
    await table_counts(store, db_url, FLOOR + 200)
    other = await asyncpg.connect(db_url)
    try:
        async with other.transaction():
            await other.execute("LOCK TABLE messages IN SHARE UPDATE EXCLUSIVE MODE")
            asked = await asyncio.wait_for(store.retention.refresh_statistics(), 10)
            counts = await analyze_counts(db_url)
    finally:
        await other.close()

    assert "messages" in asked and counts["messages"] == 0 and counts["recipients"] == 1
    assert "messages" in await store.retention.refresh_statistics()  # once it is free
    assert (await analyze_counts(db_url))["messages"] == 1


@POSTGRES_ONLY
async def test_tables_another_role_owns_are_left_to_it(
        store: Store, db_url: str) -> None:
    """ANALYZE would skip them with a warning, every round: they are not asked for."""
    role = f"outbox_not_owner_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(db_url)
    try:
        await admin.execute(f'CREATE ROLE "{role}" LOGIN')
        await admin.execute(f'GRANT ALL ON ALL TABLES IN SCHEMA public TO "{role}"')
        await fill(store, FLOOR + 200, "m")
        await table_counts(store, db_url, FLOOR + 200)
        url = make_url(db_url).set(username=role).render_as_string(hide_password=False)
        not_owner = await open_store(url)
        try:
            assert await not_owner.retention.refresh_statistics() == ()
        finally:
            await not_owner.close()
        assert (await analyze_counts(db_url))["messages"] == 0
        assert "messages" in await store.retention.refresh_statistics()  # the owner's
    finally:
        await admin.execute(f'DROP OWNED BY "{role}"')
        await admin.execute(f'DROP ROLE "{role}"')
        await admin.close()
