"""PostgreSQL's liveness lock lives in one session: closing that session tells every
other node this one died, and they take its claims back while it goes on delivering
them. Found by bench/multinode.py: two nodes, no crash, 167 duplicates on a loaded
machine, because the lock's heartbeat and the sweeper's "who is dead" query overlapped
on the one connection and the error closed it."""

from __future__ import annotations

import asyncio

import asyncpg
from tests.pg import fresh_database

from outbox.store.liveness import LOCK_NAMESPACE, RESTART_GRACE, AdvisoryLocks, lock_key

A, B = "hostA:1:aa", "hostB:2:bb"


async def _held_by_others(url: str, owner: str) -> bool:
    """Whether `owner`'s lock is held, as another node sees it."""
    watcher = await asyncpg.connect(url)
    try:
        rows = await watcher.fetch(
            "SELECT objid FROM pg_locks WHERE locktype = 'advisory' AND classid = $1 "
            "AND objsubid = 2 AND granted AND database = "
            "(SELECT oid FROM pg_database WHERE datname = current_database())", LOCK_NAMESPACE)
    finally:
        await watcher.close()
    return lock_key(owner) in {int(row["objid"]) for row in rows}


async def _overlap(url: str, rounds: int) -> tuple[int, list[BaseException]]:
    a, b = AdvisoryLocks(url), AdvisoryLocks(url)
    await a.register(A)
    await b.register(B)
    session = a._conn.get_server_pid()
    errors: list[BaseException] = []
    try:
        for _ in range(rounds):
            # Node A's heartbeat and its sweeper, at the same moment.
            results = await asyncio.gather(a.keep(A), a.dead([B]), return_exceptions=True)
            errors += [r for r in results if isinstance(r, BaseException)]
        assert await _held_by_others(url, A)
        return (0 if a._conn is not None and a._conn.get_server_pid() == session else 1), errors
    finally:
        await a.unregister(A)
        await b.unregister(B)


def test_heartbeat_and_sweep_at_once_never_let_go_of_the_lock() -> None:
    with fresh_database("outbox_liveness") as url:
        replaced, errors = asyncio.run(_overlap(url, 50))
    assert errors == []
    assert replaced == 0, "the lock's session was closed and taken again: others saw a death"


async def _past_restart_grace(url: str) -> None:
    """Another test of the suite may have just restarted PostgreSQL (outage tests):
    wait until the server has been up for RESTART_GRACE, as dead() requires."""
    conn = await asyncpg.connect(url)
    try:
        up = float(await conn.fetchval(
            "SELECT EXTRACT(EPOCH FROM now() - pg_postmaster_start_time())"))
    finally:
        await conn.close()
    await asyncio.sleep(max(0.0, RESTART_GRACE - up + 0.1))


async def _a_is_dead(held_in: str, asked_in: str, *, a_stops: bool) -> bool:
    """Whether node B, on `asked_in`, takes owner A for dead within 10 s: A's lock is
    taken on `held_in` and, with `a_stops`, given up again before B asks. A stopping
    node ends its session without waiting: its lock goes when the server's backend has
    noticed, which on a loaded machine can be after B's first look (CI saw that)."""
    await _past_restart_grace(asked_in)
    a, b = AdvisoryLocks(held_in), AdvisoryLocks(asked_in)
    await a.register(A)
    await b.register(B)
    if a_stops:
        await a.unregister(A)
    try:
        deadline = asyncio.get_running_loop().time() + 10
        while A not in await b.dead([A]):
            if asyncio.get_running_loop().time() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True
    finally:
        await a.unregister(A)
        await b.unregister(B)


def test_a_node_that_unregisters_is_dead_to_the_others() -> None:
    # The counterpart: the serialisation does not keep a stopped node's lock alive.
    # (dead() answers nothing within RESTART_GRACE of a server start: waited out first.)
    with fresh_database("outbox_liveness") as url:
        assert asyncio.run(_a_is_dead(url, url, a_stops=True))


def test_a_lock_held_in_another_database_does_not_keep_an_owner_alive() -> None:
    # Advisory locks are per database, pg_locks shows the whole server's: another
    # Outbox on the same server (or this suite's other tests, running at once with the
    # same owner names) must not make a dead owner look alive. CI failed the test above
    # this way while the heartbeat test held A's lock in its own database.
    with fresh_database("outbox_liveness") as held_in, \
            fresh_database("outbox_liveness") as asked_in:
        assert asyncio.run(_a_is_dead(held_in, asked_in, a_stops=False))
