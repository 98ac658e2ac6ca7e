"""cancel, retry, hold_relay, release_relay: state rules and held-time accounting."""

from __future__ import annotations

import pytest

from outbox.core.model import Event, EventType, MessageStatus, RecipientStatus, RecipientUpdate
from outbox.errors import Conflict, NotFound
from outbox.store.base import Store
from tests.contract.support import LEASE, at, finished, new_message

AUTH_ALERT = Event(at(10), EventType.HELD, guidance="auth.failed", detail="535 on relay")


async def _in_status(store: Store, status: MessageStatus, id: str = "m1") -> None:
    """Bring a fresh message into `status` through the store's own verbs."""
    await store.enqueue(new_message(id=id, status=(MessageStatus.HELD if status is
                                                   MessageStatus.HELD else MessageStatus.QUEUED)))
    if status in (MessageStatus.QUEUED, MessageStatus.HELD):
        return
    (claim,) = await store.claim_due("w", at(1), at(1) + LEASE, 1)
    if status is not MessageStatus.SENDING:
        due = at(60) if status is MessageStatus.DEFERRED else None
        await store.record_attempts([finished(claim, status, due_at=due)])


@pytest.mark.parametrize("status", [MessageStatus.QUEUED, MessageStatus.DEFERRED,
                                    MessageStatus.HELD])
async def test_cancel_stops_waiting_mail(store: Store, status: MessageStatus) -> None:
    await _in_status(store, status)

    message = await store.cancel("m1", at(20))

    assert message.status is MessageStatus.CANCELLED and message.due_at is None
    assert (await store.get("m1")).events[-1] == Event(at(20), EventType.CANCELLED)
    assert await store.claim_due("w", at(99), at(199), 5) == []


@pytest.mark.parametrize("status", [MessageStatus.SENDING, MessageStatus.SENT,
                                    MessageStatus.FAILED])
async def test_cancel_refuses_mail_in_flight_or_done(store: Store, status: MessageStatus) -> None:
    await _in_status(store, status)
    before = await store.get("m1")

    with pytest.raises(Conflict):
        await store.cancel("m1", at(20))

    assert await store.get("m1") == before


@pytest.mark.parametrize("status", [MessageStatus.DEFERRED, MessageStatus.FAILED,
                                    MessageStatus.HELD])
async def test_retry_queues_the_message_due_now(store: Store, status: MessageStatus) -> None:
    await _in_status(store, status)

    message = await store.retry("m1", at(30))

    assert (message.status, message.due_at) == (MessageStatus.QUEUED, at(30))
    assert all(r.status is RecipientStatus.PENDING for r in message.recipients)
    last = (await store.get("m1")).events[-1]
    assert last.type is (EventType.RELEASED if status is MessageStatus.HELD
                         else EventType.QUEUED)
    assert [c.message.id for c in await store.claim_due("w", at(30), at(99), 5)] == ["m1"]


async def test_retry_of_partially_sent_mail_keeps_the_delivered_recipients(store: Store) -> None:
    await store.enqueue(new_message(id="m1", to=["a@example.com", "b@example.com"]))
    (claim,) = await store.claim_due("w", at(1), at(1) + LEASE, 1)
    updates = [RecipientUpdate("a@example.com", RecipientStatus.SENT, 250),
               RecipientUpdate("b@example.com", RecipientStatus.FAILED, 550)]
    await store.record_attempts([finished(claim, MessageStatus.PARTIALLY_SENT,
                                          updates=updates)])

    message = await store.retry("m1", at(30))

    assert [r.status for r in message.recipients] == [RecipientStatus.SENT,
                                                       RecipientStatus.PENDING]


@pytest.mark.parametrize("status", [MessageStatus.QUEUED, MessageStatus.SENDING,
                                    MessageStatus.SENT])
async def test_retry_refuses_other_states(store: Store, status: MessageStatus) -> None:
    await _in_status(store, status)
    before = await store.get("m1")

    with pytest.raises(Conflict):
        await store.retry("m1", at(30))

    assert await store.get("m1") == before


async def test_cancel_and_retry_of_unknown_ids_raise_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        await store.cancel("nope", at(1))
    with pytest.raises(NotFound):
        await store.retry("nope", at(1))


async def test_hold_relay_holds_waiting_mail_for_that_relay_only(store: Store) -> None:
    await store.enqueue(new_message(id="queued", relay="smtp"))
    await _in_status(store, MessageStatus.DEFERRED, id="deferred")  # relay "default"
    await store.enqueue(new_message(id="other-relay", relay="internal"))
    await store.enqueue(new_message(id="sending", relay="smtp", accepted_at=at(-100)))
    await store.claim_due("w", at(-50), at(500), 1)

    held = await store.hold_relay("smtp", at(10), "authentication failed", AUTH_ALERT)
    held += await store.hold_relay("default", at(10), "authentication failed", AUTH_ALERT)

    assert held == 2
    for id in ("queued", "deferred"):
        detail = await store.get(id)
        assert detail.message.status is MessageStatus.HELD and detail.message.due_at is None
        assert detail.message.hold_reason == "authentication failed"
        assert detail.events[-1] == AUTH_ALERT
    assert (await store.get("other-relay")).message.status is MessageStatus.QUEUED
    assert (await store.get("sending")).message.status is MessageStatus.SENDING


async def test_release_relay_requeues_and_counts_the_time_held(store: Store) -> None:
    await store.enqueue(new_message(id="m1", relay="smtp"))
    await store.hold_relay("smtp", at(10), "authentication failed", AUTH_ALERT)

    assert await store.release_relay("smtp", at(70)) == 1
    assert await store.release_relay("smtp", at(80)) == 0

    detail = await store.get("m1")
    message = detail.message
    assert (message.status, message.due_at) == (MessageStatus.QUEUED, at(70))
    assert (message.held_seconds, message.hold_reason) == (60.0, "")
    assert detail.events[-1].type is EventType.RELEASED
    await store.hold_relay("smtp", at(100), "authentication failed", AUTH_ALERT)
    await store.release_relay("smtp", at(130.5))
    assert (await store.get("m1")).message.held_seconds == 90.5


async def test_release_relay_leaves_mail_held_for_other_reasons(store: Store) -> None:
    await store.enqueue(new_message(id="by-policy", relay="smtp",
                                    status=MessageStatus.HELD, hold_reason="review"))
    await store.enqueue(new_message(id="uncertain", relay="smtp"))
    await store.claim_due("dead", at(1), at(5), 5)
    await store.release_stale(at(6), hold=True)

    assert await store.release_relay("smtp", at(70)) == 0
    assert (await store.get("by-policy")).message.status is MessageStatus.HELD
    assert (await store.get("uncertain")).message.status is MessageStatus.HELD


async def test_a_held_attempt_is_released_with_its_relay(store: Store) -> None:
    await store.enqueue(new_message(id="m1", relay="default"))
    (claim,) = await store.claim_due("w", at(1), at(1) + LEASE, 1)
    await store.record_attempts([finished(claim, MessageStatus.HELD, count_attempt=False,
                                          hold_reason="535 authentication failed",
                                          held_for_relay=True, finished_at=at(2))])
    held = (await store.get("m1")).message
    assert (held.status, held.due_at, held.attempts) == (MessageStatus.HELD, None, 0)
    assert held.hold_reason == "535 authentication failed"

    assert await store.release_relay("default", at(32)) == 1

    released = (await store.get("m1")).message
    assert (released.status, released.held_seconds) == (MessageStatus.QUEUED, 30.0)


async def test_an_attempt_held_for_another_reason_waits_for_an_operator(store: Store) -> None:
    # e.g. on_uncertain = "hold": releasing the relay must not resend it unreviewed.
    await store.enqueue(new_message(id="m1", relay="default"))
    (claim,) = await store.claim_due("w", at(1), at(1) + LEASE, 1)
    await store.record_attempts([finished(claim, MessageStatus.HELD,
                                          hold_reason="delivery uncertain", finished_at=at(2))])

    assert await store.release_relay("default", at(32)) == 0
    assert (await store.get("m1")).message.status is MessageStatus.HELD
