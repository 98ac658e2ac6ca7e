"""release_stale (crash recovery) and release_claims (graceful stop)."""

from __future__ import annotations

import asyncio

from outbox.core.model import EventType, MessageStatus
from outbox.store.base import Store
from tests.contract.conftest import OpenStore
from tests.contract.support import at, enqueue_many, new_message


def _count(events: tuple[object, ...], kind: EventType) -> int:
    return sum(1 for e in events if getattr(e, "type", None) is kind)


async def test_expired_leases_come_back_deferred_with_one_uncertain_event(store: Store) -> None:
    ids = await enqueue_many(store, 3)
    await store.claim_due("dead", at(1), at(30), 10)

    assert await store.release_stale(at(29), hold=False) == []
    released = await store.release_stale(at(31), hold=False)
    assert await store.release_stale(at(32), hold=False) == []

    assert sorted(released) == sorted(ids)
    for id in ids:
        detail = await store.get(id)
        assert detail.message.status is MessageStatus.DEFERRED
        assert detail.message.due_at == at(31)
        assert detail.message.attempts == 1, "the lost attempt counts"
        assert _count(detail.events, EventType.UNCERTAIN) == 1
        assert detail.events[-1].attempt == 1
    claims = await store.claim_due("alive", at(31), at(90), 10)
    assert sorted(c.message.id for c in claims) == sorted(ids)
    assert all(c.attempt == 2 for c in claims)


async def test_with_hold_expired_leases_come_back_held(store: Store) -> None:
    await store.enqueue(new_message(id="m1"))
    await store.claim_due("dead", at(1), at(30), 10)

    assert await store.release_stale(at(40), hold=True) == ["m1"]

    detail = await store.get("m1")
    assert detail.message.status is MessageStatus.HELD and detail.message.due_at is None
    assert detail.message.hold_reason
    assert _count(detail.events, EventType.UNCERTAIN) == 1
    assert await store.claim_due("alive", at(50), at(90), 10) == []
    await store.retry("m1", at(100))
    detail = await store.get("m1")
    assert detail.message.status is MessageStatus.QUEUED
    assert detail.message.held_seconds == 60.0
    assert detail.events[-1].type is EventType.RELEASED


async def test_concurrent_sweeps_mark_each_message_uncertain_once(
        store: Store, open_stores: OpenStore) -> None:
    ids = await enqueue_many(store, 40)
    await store.claim_due("dead", at(1), at(30), 100)
    sweepers = [store, *[await open_stores() for _ in range(3)]]

    results = await asyncio.gather(*(s.release_stale(at(31), hold=False) for s in sweepers))

    released = [id for result in results for id in result]
    assert sorted(released) == sorted(ids)
    for id in ids[:5]:
        assert _count((await store.get(id)).events, EventType.UNCERTAIN) == 1


async def test_release_claims_gives_back_only_the_owners_claims(store: Store) -> None:
    await enqueue_many(store, 4)
    mine = await store.claim_due("stopping", at(1), at(300), 3)
    (theirs,) = await store.claim_due("other", at(1), at(300), 3)

    assert await store.release_claims("stopping", at(5)) == 3

    for claim in mine:
        detail = await store.get(claim.message.id)
        assert detail.message.status is MessageStatus.QUEUED
        assert detail.message.due_at == at(5)
        assert detail.message.attempts == 0
        assert _count(detail.events, EventType.UNCERTAIN) == 0
    assert (await store.get(theirs.message.id)).message.status is MessageStatus.SENDING
    again = await store.claim_due("next", at(5), at(300), 10)
    assert sorted(c.message.id for c in again) == sorted(c.message.id for c in mine)
    assert all(c.attempt == 1 for c in again)
