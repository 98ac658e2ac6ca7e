"""enqueue_many (batch submit): results in order, idempotency keys taken before or
within the batch, and one transaction for the whole batch, not one per message."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import asyncpg
import pytest

from outbox.errors import StorageError
from outbox.store.base import IdempotencyClaim, NewMessage, Store
from outbox.store.sql import group_commit, queries
from outbox.store.sql.group_commit import GROUP_MAX, HEAVY, GroupCommit
from tests.contract.support import new_message


def keyed(key: str, hash: str = "h") -> NewMessage:
    return new_message(idempotency=IdempotencyClaim("app", key, hash))


async def test_results_in_order_with_keys_taken_before_and_within_the_batch(
        store: Store) -> None:
    earlier, _ = await store.messages.enqueue(keyed("k-earlier"))
    batch = [keyed("k-1"), new_message(), keyed("k-earlier"), keyed("k-1")]

    results = await store.messages.enqueue_many(batch)

    assert [created for _, created in results] == [True, True, False, False]
    assert [m.id for m, _ in results] == [batch[0].id, batch[1].id, earlier.id, batch[0].id]
    page = await store.messages.list(None, 10, None)
    assert len(page.messages) == 3  # the earlier one and two new ones


async def test_an_empty_batch_does_nothing(store: Store) -> None:
    assert await store.messages.enqueue_many([]) == []
    assert await store.messages.find_by_idempotency_keys("app", []) == {}


async def test_many_idempotency_keys_are_looked_up_in_one_read(store: Store) -> None:
    first, _ = await store.messages.enqueue(keyed("k-1", "hash-1"))
    second, _ = await store.messages.enqueue(keyed("k-2", "hash-2"))
    found = await store.messages.find_by_idempotency_keys("app", ["k-1", "k-2", "k-3", "k-1"])
    assert {key: (m.id, h) for key, (m, h) in found.items()} == {
        "k-1": (first.id, "hash-1"), "k-2": (second.id, "hash-2")}
    assert found["k-1"][0].recipients == first.recipients
    assert await store.messages.find_by_idempotency_keys("other", ["k-1"]) == {}


async def test_keys_looked_up_at_once_share_a_read_and_each_caller_gets_its_own(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Single look-ups (SMTP submission makes one per message) that arrive together go as
    one read per owner (sql/key_lookups.py)."""
    mine, _ = await store.messages.enqueue(keyed("k-1", "hash-1"))
    theirs, _ = await store.messages.enqueue(new_message(
        owner="other", idempotency=IdempotencyClaim("other", "k-1", "hash-o")))
    reads: list[tuple[str, list[str]]] = []
    look_up = queries.find_by_idempotency_keys

    def counted(conn: Any, owner: str, keys: Sequence[str]) -> Any:
        reads.append((owner, sorted(keys)))
        return look_up(conn, owner, keys)

    monkeypatch.setattr(queries, "find_by_idempotency_keys", counted)
    asks = [("app", "k-1"), ("app", "k-2"), ("other", "k-1"), ("app", "k-1")] * 5
    found = await asyncio.gather(*(store.messages.find_by_idempotency_key(owner, key)
                                   for owner, key in asks))

    known = {("app", "k-1"): (mine.id, "hash-1"), ("other", "k-1"): (theirs.id, "hash-o")}
    assert [(f[0].id, f[1]) if f else None for f in found] == [known.get(a) for a in asks]
    # The first call starts the look-up task; the other nineteen are waiting when it runs.
    assert sorted(reads) == [("app", ["k-1", "k-2"]), ("other", ["k-1"])]


async def test_a_failed_look_up_reaches_every_caller_and_the_next_one_works(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    mine, _ = await store.messages.enqueue(keyed("k-1", "hash-1"))
    look_up = queries.find_by_idempotency_keys

    def database_gone(*_: Any) -> Any:
        raise StorageError("database error: connection refused")

    monkeypatch.setattr(queries, "find_by_idempotency_keys", database_gone)
    failed = await asyncio.gather(*(store.messages.find_by_idempotency_key("app", key)
                                    for key in ("k-1", "k-2")), return_exceptions=True)
    assert all(isinstance(result, StorageError) for result in failed)

    monkeypatch.setattr(queries, "find_by_idempotency_keys", look_up)
    found = await store.messages.find_by_idempotency_key("app", "k-1")
    assert found is not None and found[0].id == mine.id


@pytest.mark.parametrize("backend", ["postgresql"])  # SQLite: the group commit test below
async def test_a_batch_is_one_transaction(store: Store, db_url: str) -> None:
    """PostgreSQL: every row of the batch carries the same xmin (inserting transaction)."""
    batch = [new_message() for _ in range(300)]
    await store.messages.enqueue_many(batch)
    conn = await asyncpg.connect(db_url)
    try:
        transactions = await conn.fetchval(
            "SELECT count(DISTINCT xmin::text) FROM messages WHERE id = ANY($1::text[])",
            [m.id for m in batch])
    finally:
        await conn.close()
    assert transactions == 1


@pytest.mark.parametrize("backend", ["postgresql"])  # SQLite: one write at a time, below
async def test_a_message_with_many_recipients_does_not_hold_up_small_ones(
        store: Store, db_url: str) -> None:
    """PostgreSQL: a heavy message commits in a transaction of its own, so a small one
    submitted meanwhile is not queued behind it (issue 17). Here the heavy message's
    insert waits on another session's uncommitted row with the same id, for as long
    as the test likes."""
    seed, _ = await store.messages.enqueue(new_message())
    other = await asyncpg.connect(db_url)
    try:
        holding = other.transaction()
        await holding.start()
        await other.execute("CREATE TEMP TABLE copied AS SELECT * FROM messages WHERE id = $1",
                            seed.id)
        await other.execute("UPDATE copied SET id = 'heavy', message_id = '<heavy@x>'")
        await other.execute("INSERT INTO messages SELECT * FROM copied")
        heavy = asyncio.create_task(store.messages.enqueue(new_message(
            id="heavy", to=[f"r{n}@example.com" for n in range(HEAVY + 1)])))
        await asyncio.sleep(0.2)  # the heavy insert is under way, and waits

        _, created = await asyncio.wait_for(store.messages.enqueue(new_message()), 10)

        assert created and not heavy.done()
        await holding.rollback()
        _, heavy_created = await asyncio.wait_for(heavy, 10)
        assert heavy_created
    finally:
        await other.close()


class CountingRunner:
    """A runner that records the size of every write (each one transaction), and the
    most writes it had under way at once. It runs the group commit's body, which takes
    its group when the transaction begins, after a wait as for SQLite's turn; the
    insert itself is `no_database`'s."""

    def __init__(self, *, parallel_writes: bool = False) -> None:
        self.parallel_writes = parallel_writes  # True: as PostgreSQL's runner
        self.writes: list[int] = []
        self.under_way = self.most_at_once = 0

    async def write_alone(self, body: Any, *args: Any) -> list[bool]:
        self.under_way += 1
        self.most_at_once = max(self.most_at_once, self.under_way)
        await asyncio.sleep(0.01)
        created: list[bool] = body(None, *args)
        self.writes.append(len(created))
        self.under_way -= 1
        return created

    write_first = write_alone


@pytest.fixture
def no_database(monkeypatch: pytest.MonkeyPatch) -> None:
    """The group commit's insert, for CountingRunner: every message is new."""
    def inserted(conn: None, batch: Sequence[NewMessage], notice: object) -> list[bool]:
        return [True] * len(batch)

    monkeypatch.setattr(group_commit, "insert_messages", inserted)


@pytest.mark.usefixtures("no_database")
async def test_sqlite_group_commit_keeps_a_batch_whole() -> None:
    """A batch, even over GROUP_MAX, is one commit; single messages that arrive meanwhile
    share the next one."""
    runner = CountingRunner()
    commits = GroupCommit(runner)  # type: ignore[arg-type]
    batch = [new_message() for _ in range(GROUP_MAX + 300)]

    results = await asyncio.gather(commits.insert_many(batch),
                                   *(commits.insert(new_message()) for _ in range(5)))

    assert results[0] == [True] * len(batch) and results[1:] == [True] * 5
    assert runner.writes == [len(batch), 5]
    # One group at a time: SQLite's writer relies on it, so that the group commit's
    # urgent writes never starve the others (store/sqlite_writer.py).
    assert runner.most_at_once == 1


@pytest.mark.usefixtures("no_database")
async def test_with_parallel_writes_a_heavy_arrival_is_written_beside_the_groups() -> None:
    """Where writes run side by side (PostgreSQL's runner): a message with more than
    HEAVY recipients is its own write, at the same time as the group of small ones."""
    runner = CountingRunner(parallel_writes=True)
    commits = GroupCommit(runner)  # type: ignore[arg-type]
    heavy = new_message(to=[f"r{n}@example.com" for n in range(HEAVY + 1)])

    results = await asyncio.gather(commits.insert(heavy),
                                   *(commits.insert(new_message()) for _ in range(3)))

    assert results == [True] * 4
    assert sorted(runner.writes) == [1, 3]
    assert runner.most_at_once == 2
    await commits.close()


@pytest.mark.usefixtures("no_database")
async def test_a_batch_with_many_recipients_still_waits_its_turn() -> None:
    """A batch takes several idempotency keys: beside a group taking two of the same
    keys in the other order, the two transactions could deadlock. It stays in line."""
    runner = CountingRunner(parallel_writes=True)
    commits = GroupCommit(runner)  # type: ignore[arg-type]
    batch = [new_message(to=[f"r{n}@example.com" for n in range(HEAVY)]) for _ in range(2)]

    await asyncio.gather(commits.insert_many(batch), commits.insert(new_message()))

    assert runner.writes == [3]  # in the queue: one group with the message beside it
    await commits.close()


async def test_a_key_is_taken_only_for_its_owner_within_a_batch(store: Store) -> None:
    await store.messages.enqueue(keyed("k-1"))
    theirs = new_message(owner="other", idempotency=IdempotencyClaim("other", "k-1", "h"))
    results = await store.messages.enqueue_many([theirs, keyed("k-1"), keyed("k-2")])
    assert [created for _, created in results] == [True, False, True]


async def test_taken_keys_are_looked_up_through_the_owner_and_key_index(store: Store) -> None:
    """By key alone, the look-up each commit of keyed submits makes read every message."""
    query = queries.taken_keys_query({"app", "other"}, {"k-1", "k-2"})
    plan = await store._run.write(_plan, query)  # type: ignore[attr-defined]
    # The index searched by both of its columns (an index read whole also names it).
    by_both = ("(owner=? AND idempotency_key=?)" if "SEARCH" in plan
               else "Index Cond: ((owner = ANY (")
    assert by_both in plan, plan


def _plan(conn: Any, query: Any) -> str:
    """The plan of `query`; on PostgreSQL with sequential scans priced out, so a small
    table's plan shows whether an index can serve it at all."""
    sql = str(query.compile(conn, compile_kwargs={"literal_binds": True}))
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        return "\n".join(row[0] for row in conn.exec_driver_sql(f"EXPLAIN {sql}"))
    return "\n".join(row[-1] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))


class RefusingRunner(CountingRunner):
    """A database that cannot begin a transaction (down, or the turn never came)."""

    async def write_alone(self, body: Any, *args: Any) -> list[bool]:
        self.writes.append(0)
        await asyncio.sleep(0.01)
        raise StorageError("database error: connection refused")

    write_first = write_alone


async def test_a_transaction_that_never_began_fails_the_group_it_would_have_taken() -> None:
    """The group is taken when its transaction begins; one that fails before, fails the
    waiting group as it would have, once, instead of trying again and again."""
    runner = RefusingRunner()
    commits = GroupCommit(runner)  # type: ignore[arg-type]

    arrivals = [asyncio.ensure_future(commits.insert(new_message())) for _ in range(3)]
    await asyncio.wait(arrivals, timeout=5)

    assert [type(arrival.exception()) for arrival in arrivals] == [StorageError] * 3
    assert runner.writes == [0]
    await commits.close()
