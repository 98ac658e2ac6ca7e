"""recover_stale and abandon_claim: crash recovery; claim_holders; database time."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from outbox.core.model import EventType, MessageStatus, RecipientStatus
from outbox.core.recovery import AbandonedClaim, Cause, Recovery
from outbox.core.retry import RetryPolicy
from outbox.store.base import Store
from tests.contract.conftest import OpenStore
from tests.contract.support import RECOVERY, at, enqueue_many, new_message, recover


def _count(events: tuple[object, ...], kind: EventType) -> int:
    return sum(1 for e in events if getattr(e, "type", None) is kind)


async def test_expired_leases_come_back_deferred_with_one_uncertain_event(store: Store) -> None:
    ids = await enqueue_many(store, 3)
    await store.messages.claim_due("dead", at(1), at(30), 10)

    assert await recover(store, at(29), hold=False) == []
    released = await recover(store, at(31), hold=False)
    assert await recover(store, at(32), hold=False) == []

    assert sorted(released) == sorted(ids)
    for id in ids:
        detail = await store.messages.get(id)
        assert detail.message.status is MessageStatus.DEFERRED
        assert detail.message.due_at == at(31)
        assert detail.message.attempts == 1, "the lost attempt counts"
        assert _count(detail.events, EventType.UNCERTAIN) == 1
        assert detail.events[-1].attempt == 1
    claims = await store.messages.claim_due("alive", at(31), at(90), 10)
    assert sorted(c.message.id for c in claims) == sorted(ids)
    assert all(c.attempt == 2 for c in claims)


async def test_with_hold_expired_leases_come_back_held(store: Store) -> None:
    await store.messages.enqueue(new_message(id="m1"))
    await store.messages.claim_due("dead", at(1), at(30), 10)

    assert await recover(store, at(40), hold=True) == ["m1"]

    detail = await store.messages.get("m1")
    assert detail.message.status is MessageStatus.HELD and detail.message.due_at is None
    assert detail.message.hold_reason
    assert _count(detail.events, EventType.UNCERTAIN) == 1
    assert await store.messages.claim_due("alive", at(50), at(90), 10) == []
    await store.messages.retry("m1", at(100))
    detail = await store.messages.get("m1")
    assert detail.message.status is MessageStatus.QUEUED
    assert detail.message.held_seconds == 60.0
    assert detail.events[-1].type is EventType.RELEASED


async def test_concurrent_sweeps_mark_each_message_uncertain_once(
        store: Store, open_stores: OpenStore) -> None:
    ids = await enqueue_many(store, 40)
    await store.messages.claim_due("dead", at(1), at(30), 100)
    sweepers = [store, *[await open_stores() for _ in range(3)]]

    results = await asyncio.gather(*(recover(s, at(31), hold=False)
                                     for s in sweepers))

    released = [id for result in results for id in result]
    assert sorted(released) == sorted(ids)
    for id in ids[:5]:
        assert _count((await store.messages.get(id)).events, EventType.UNCERTAIN) == 1



async def test_a_dead_owners_claims_come_back_at_once_whatever_their_lease(store: Store) -> None:
    dead = await enqueue_many(store, 2)
    await store.messages.claim_due("dead-worker", at(1), at(300), 2)

    assert await store.messages.claim_holders() == {"dead-worker"}
    recovered = await recover(store, at(2), dead=["dead-worker"])

    assert sorted(recovered) == sorted(dead)
    assert await store.messages.claim_holders() == set()
    for id in dead:
        detail = await store.messages.get(id)
        assert detail.message.status is MessageStatus.DEFERRED
        assert detail.message.due_at == at(2), "tried again at once"
        assert detail.message.attempts == 1
        assert detail.message.claim is None
        uncertain = [e for e in detail.events if e.type is EventType.UNCERTAIN]
        assert len(uncertain) == 1 and "dead-worker" in uncertain[0].detail
        assert "gone" in uncertain[0].detail


async def test_a_live_owners_claim_within_its_lease_stays(store: Store) -> None:
    await enqueue_many(store, 2)
    await store.messages.claim_due("a", at(1), at(300), 1)
    (b,) = await store.messages.claim_due("b", at(1), at(300), 1)

    assert await recover(store, at(200), dead=["a"]) != [b.message.id]
    detail = await store.messages.get(b.message.id)
    assert detail.message.status is MessageStatus.SENDING
    assert detail.message.claim is not None
    assert (detail.message.claim.owner, detail.message.claim.lease_until) == ("b", at(300))
    assert detail.message.claim.since == at(1)


async def test_recovery_fails_a_message_past_max_attempts(store: Store) -> None:
    await store.messages.enqueue(new_message(id="m1", to=("a@x.test", "b@x.test")))
    limited = Recovery(RetryPolicy(max_attempts=2), "retry")
    for n in (1, 2):
        await store.messages.claim_due("crashing", at(10 * n), at(10 * n + 5), 1)
        await recover(store, at(10 * n + 6), recovery=limited)

    detail = await store.messages.get("m1")
    assert detail.message.status is MessageStatus.FAILED
    assert detail.message.attempts == 2, "never more than max_attempts"
    assert [(r.status, r.guidance) for r in detail.message.recipients] == [
        (RecipientStatus.FAILED, "max_attempts_reached")] * 2
    assert detail.events[-1].type is EventType.FAILED
    assert await store.messages.claim_due("w", at(100), at(200), 1) == []


async def test_one_sweep_gives_each_claim_its_own_verdict(store: Store) -> None:
    """A sweep writes its verdicts together (one statement per table): beside a message
    past its attempts, failed with its recipients, one is deferred with its own."""
    limited = Recovery(RetryPolicy(max_attempts=2), "retry")
    await store.messages.enqueue(new_message(id="old", to=("a@x.test", "b@x.test")))
    await store.messages.claim_due("crashing", at(10), at(15), 1)
    await recover(store, at(16), recovery=limited)
    await store.messages.enqueue(new_message(id="new", to=("c@x.test",)))
    claimed = await store.messages.claim_due("crashing", at(20), at(25), 10)
    assert sorted(c.message.id for c in claimed) == ["new", "old"]

    assert sorted(await recover(store, at(26), recovery=limited)) == ["new", "old"]

    old, new = (await store.messages.get("old")), (await store.messages.get("new"))
    assert (old.message.status, old.message.attempts) == (MessageStatus.FAILED, 2)
    assert [(r.status, r.guidance) for r in old.message.recipients] == [
        (RecipientStatus.FAILED, "max_attempts_reached")] * 2
    assert [e.type for e in old.events][-2:] == [EventType.UNCERTAIN, EventType.FAILED]
    assert (new.message.status, new.message.attempts) == (MessageStatus.DEFERRED, 1)
    assert new.message.due_at == at(26) and new.message.claim is None
    assert [r.status for r in new.message.recipients] == [RecipientStatus.PENDING]
    assert _count(new.events, EventType.UNCERTAIN) == 1
    assert _count(new.events, EventType.FAILED) == 0


async def test_recovery_fails_a_message_past_max_age(store: Store) -> None:
    await store.messages.enqueue(new_message(id="m1", accepted_at=at(0)))
    await store.messages.claim_due("w", at(1), at(2), 1)
    old = Recovery(RetryPolicy(max_age=timedelta(seconds=60)), "retry")

    await recover(store, at(61), recovery=old)

    detail = await store.messages.get("m1")
    assert detail.message.status is MessageStatus.FAILED
    assert detail.message.recipients[0].guidance == "max_age_reached"


async def test_held_on_recovery_never_fails_even_past_the_limits(store: Store) -> None:
    await store.messages.enqueue(new_message(id="m1"))
    await store.messages.claim_due("w", at(1), at(2), 1)
    limited = Recovery(RetryPolicy(max_attempts=1), "retry")

    await recover(store, at(3), hold=True, recovery=limited)

    assert (await store.messages.get("m1")).message.status is MessageStatus.HELD


async def test_abandon_claim_applies_the_verdict_only_with_the_current_token(
        store: Store) -> None:
    await store.messages.enqueue(new_message(id="m1"))
    (claim,) = await store.messages.claim_due("w", at(1), at(300), 1)
    crashed = AbandonedClaim(owner="w", attempts_made=0, accepted_at=at(0),
                             held_for=timedelta(0), cause=Cause.CRASHED, may_have_sent=False,
                             detail="KeyError: 'subject'")
    verdict = RECOVERY.decide(crashed, at(2), random.Random(1))

    assert not await store.messages.abandon_claim("m1", "not-the-token", at(2), verdict)
    assert await store.messages.abandon_claim("m1", claim.token, at(2), verdict)
    assert not await store.messages.abandon_claim("m1", claim.token, at(2), verdict)

    detail = await store.messages.get("m1")
    assert detail.message.status is MessageStatus.DEFERRED and detail.message.attempts == 1
    assert detail.message.due_at is not None and detail.message.due_at > at(2), "backs off"
    assert _count(detail.events, EventType.UNCERTAIN) == 0, "nothing reached a relay"
    assert "failed inside Outbox: KeyError" in detail.events[-1].detail
    assert detail.events[-1].guidance == "internal_error"


async def test_the_database_time_is_the_servers_or_none_for_a_file(store: Store) -> None:
    info = await store.describe_database()
    found = await store.database_time()
    if info.backend == "sqlite":
        assert found is None
    else:
        assert found is not None and found.tzinfo is not None
        assert abs((found - datetime.now(UTC)).total_seconds()) < 60


@pytest.mark.parametrize("backend", ["postgresql"])  # SQLite locks no rows
async def test_a_stale_claim_locked_by_a_frozen_transaction_holds_up_no_other(
        store: Store, db_url: str) -> None:
    """PostgreSQL: a process frozen inside a transaction on a message it claimed (its
    lease renewal, say) keeps that row locked. The sweep passes it by and recovers the
    other stale claims, then recovers it once the lock is gone. It used to wait on the
    lock, holding every claim it had locked before it, for as long as the freeze."""
    ids = sorted(await enqueue_many(store, 3))
    await store.messages.claim_due("frozen", at(1), at(30), 10)
    holder = await asyncpg.connect(db_url)
    frozen = holder.transaction()
    await frozen.start()
    try:
        await holder.execute("SELECT 1 FROM messages WHERE id = $1 FOR UPDATE", ids[0])
        # Far longer than a sweep takes; the old sweep waited for the lock, never returned.
        released = await asyncio.wait_for(recover(store, at(31)), timeout=30)
    finally:
        await frozen.rollback()
        await holder.close()
    assert sorted(released) == ids[1:]
    assert await recover(store, at(32)) == [ids[0]]


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_postgresql_ends_a_session_left_idle_inside_a_transaction(store: Store) -> None:
    """Every pooled connection asks PostgreSQL to end a session idle in a transaction
    for a minute (store/postgres.IDLE_IN_TRANSACTION_MS): a process frozen inside one
    would otherwise keep its rows locked, its claims in "sending", for the whole freeze.
    What PostgreSQL then does is its own; this pins that Outbox asks for it."""

    def shown(conn: Any) -> str:
        return str(conn.exec_driver_sql("SHOW idle_in_transaction_session_timeout").scalar())

    assert await store._run.read(shown) == "1min"  # type: ignore[attr-defined]
    assert await store._run.write(shown) == "1min"  # type: ignore[attr-defined]
