"""cancel, retry, hold_relay, release_relay: state rules and held-time accounting."""

from __future__ import annotations

from dataclasses import replace

import pytest

from outbox.core.model import (
    Event,
    EventType,
    Hold,
    MessageStatus,
    RecipientStatus,
    RecipientUpdate,
)
from outbox.errors import Conflict, NotFound
from outbox.store.base import NewRecipient, Store
from tests.contract.support import HELD, LEASE, at, finished, new_message, recover

AUTH_ALERT = Event(at(10), EventType.HELD, guidance="auth.failed", detail="535 on relay")


async def _in_status(store: Store, status: MessageStatus, id: str = "m1") -> None:
    """Bring a fresh message into `status` through the store's own verbs."""
    held = status is MessageStatus.HELD
    await store.messages.enqueue(new_message(id=id, hold=HELD if held else None))
    if status in (MessageStatus.QUEUED, MessageStatus.HELD):
        return
    (claim,) = await store.messages.claim_due("w", at(1), at(1) + LEASE, 1)
    if status is not MessageStatus.SENDING:
        due = at(60) if status is MessageStatus.DEFERRED else None
        await store.messages.record_attempts([finished(claim, status, due_at=due)])


@pytest.mark.parametrize("status", [MessageStatus.QUEUED, MessageStatus.DEFERRED,
                                    MessageStatus.HELD])
async def test_cancel_stops_waiting_mail(store: Store, status: MessageStatus) -> None:
    await _in_status(store, status)

    message = await store.messages.cancel("m1", at(20))

    assert message.status is MessageStatus.CANCELLED and message.due_at is None
    assert (await store.messages.get("m1")).events[-1] == Event(at(20), EventType.CANCELLED)
    assert await store.messages.claim_due("w", at(99), at(199), 5) == []


@pytest.mark.parametrize("status", [MessageStatus.SENDING, MessageStatus.SENT,
                                    MessageStatus.FAILED])
async def test_cancel_refuses_mail_in_flight_or_done(store: Store, status: MessageStatus) -> None:
    await _in_status(store, status)
    before = await store.messages.get("m1")

    with pytest.raises(Conflict):
        await store.messages.cancel("m1", at(20))

    assert await store.messages.get("m1") == before


@pytest.mark.parametrize("status", [MessageStatus.DEFERRED, MessageStatus.FAILED,
                                    MessageStatus.HELD])
async def test_retry_queues_the_message_due_now(store: Store, status: MessageStatus) -> None:
    await _in_status(store, status)

    message = await store.messages.retry("m1", at(30))

    assert (message.status, message.due_at) == (MessageStatus.QUEUED, at(30))
    assert all(r.status is RecipientStatus.PENDING for r in message.recipients)
    last = (await store.messages.get("m1")).events[-1]
    assert last.type is (EventType.RELEASED if status is MessageStatus.HELD
                         else EventType.QUEUED)
    assert [c.message.id for c in await store.messages.claim_due("w", at(30), at(99), 5)] == ["m1"]


async def test_retry_of_partially_sent_mail_keeps_the_delivered_recipients(store: Store) -> None:
    await store.messages.enqueue(new_message(id="m1", to=["a@example.com", "b@example.com"]))
    (claim,) = await store.messages.claim_due("w", at(1), at(1) + LEASE, 1)
    updates = [RecipientUpdate("a@example.com", RecipientStatus.SENT, 250),
               RecipientUpdate("b@example.com", RecipientStatus.FAILED, 550)]
    await store.messages.record_attempts([finished(claim, MessageStatus.PARTIALLY_SENT,
                                                   updates=updates)])

    message = await store.messages.retry("m1", at(30))

    assert [r.status for r in message.recipients] == [RecipientStatus.SENT,
                                                       RecipientStatus.PENDING]


@pytest.mark.parametrize("status", [MessageStatus.QUEUED, MessageStatus.SENDING,
                                    MessageStatus.SENT])
async def test_retry_refuses_other_states(store: Store, status: MessageStatus) -> None:
    await _in_status(store, status)
    before = await store.messages.get("m1")

    with pytest.raises(Conflict):
        await store.messages.retry("m1", at(30))

    assert await store.messages.get("m1") == before


async def test_cancel_and_retry_of_unknown_ids_raise_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        await store.messages.cancel("nope", at(1))
    with pytest.raises(NotFound):
        await store.messages.retry("nope", at(1))


async def test_hold_relay_holds_waiting_mail_for_that_relay_only(store: Store) -> None:
    await store.messages.enqueue(new_message(id="queued", relay="smtp"))
    await _in_status(store, MessageStatus.DEFERRED, id="deferred")  # relay "default"
    await store.messages.enqueue(new_message(id="other-relay", relay="internal"))
    await store.messages.enqueue(new_message(id="sending", relay="smtp", accepted_at=at(-100)))
    await store.messages.claim_due("w", at(-50), at(500), 1)

    held = await store.messages.hold_relay("smtp", at(10), "authentication failed", AUTH_ALERT)
    held += await store.messages.hold_relay("default", at(10), "authentication failed", AUTH_ALERT)

    assert held == 2
    for id in ("queued", "deferred"):
        detail = await store.messages.get(id)
        assert detail.message.status is MessageStatus.HELD and detail.message.due_at is None
        assert detail.message.hold_reason == "authentication failed"
        assert detail.events[-1] == AUTH_ALERT
    assert (await store.messages.get("other-relay")).message.status is MessageStatus.QUEUED
    assert (await store.messages.get("sending")).message.status is MessageStatus.SENDING


async def test_release_relay_requeues_and_counts_the_time_held(store: Store) -> None:
    await store.messages.enqueue(new_message(id="m1", relay="smtp"))
    await store.messages.hold_relay("smtp", at(10), "authentication failed", AUTH_ALERT)

    assert await store.messages.release_relay("smtp", at(70)) == 1
    assert await store.messages.release_relay("smtp", at(80)) == 0

    detail = await store.messages.get("m1")
    message = detail.message
    assert (message.status, message.due_at) == (MessageStatus.QUEUED, at(70))
    assert (message.held_seconds, message.hold_reason) == (60.0, "")
    assert detail.events[-1].type is EventType.RELEASED
    await store.messages.hold_relay("smtp", at(100), "authentication failed", AUTH_ALERT)
    await store.messages.release_relay("smtp", at(130.5))
    assert (await store.messages.get("m1")).message.held_seconds == 90.5


async def test_release_relay_leaves_mail_held_for_other_reasons(store: Store) -> None:
    await store.messages.enqueue(new_message(id="by-policy", relay="smtp",
                                             hold=Hold("review")))
    await store.messages.enqueue(new_message(id="uncertain", relay="smtp"))
    await store.messages.claim_due("dead", at(1), at(5), 5)
    await recover(store, at(6), hold=True)

    assert await store.messages.release_relay("smtp", at(70)) == 0
    assert (await store.messages.get("by-policy")).message.status is MessageStatus.HELD
    assert (await store.messages.get("uncertain")).message.status is MessageStatus.HELD


async def test_a_held_attempt_is_released_with_its_relay(store: Store) -> None:
    await store.messages.enqueue(new_message(id="m1", relay="default"))
    (claim,) = await store.messages.claim_due("w", at(1), at(1) + LEASE, 1)
    await store.messages.record_attempts([finished(claim, MessageStatus.HELD, count_attempt=False,
                                                   hold_reason="535 authentication failed",
                                                   held_for_relay=True, finished_at=at(2))])
    held = (await store.messages.get("m1")).message
    assert (held.status, held.due_at, held.attempts) == (MessageStatus.HELD, None, 0)
    assert held.hold_reason == "535 authentication failed"

    assert await store.messages.release_relay("default", at(32)) == 1

    released = (await store.messages.get("m1")).message
    assert (released.status, released.held_seconds) == (MessageStatus.QUEUED, 30.0)
    assert (released.due_at, released.updated_at) == (at(32), at(32))
    assert released.hold_reason == ""


async def test_an_attempt_held_for_another_reason_waits_for_an_operator(store: Store) -> None:
    # e.g. on_uncertain = "hold": releasing the relay must not resend it unreviewed.
    await store.messages.enqueue(new_message(id="m1", relay="default"))
    (claim,) = await store.messages.claim_due("w", at(1), at(1) + LEASE, 1)
    await store.messages.record_attempts([finished(claim, MessageStatus.HELD,
                                                   hold_reason="delivery uncertain",
                                                   finished_at=at(2))])

    assert await store.messages.release_relay("default", at(32)) == 0
    assert (await store.messages.get("m1")).message.status is MessageStatus.HELD


async def test_releasing_one_relay_leaves_mail_held_for_another(store: Store) -> None:
    # One message with a recipient on each relay, held because relay "b" needs attention:
    # relay "a" working again must not release it (issue 10, part 6).
    two = new_message(id="two-relays")
    two = replace(two, recipients=[NewRecipient("x@example.com", "to", "a"),
                                   NewRecipient("y@example.com", "to", "b")])
    await store.messages.enqueue(two)
    (claim,) = await store.messages.claim_due("w", at(1), at(1) + LEASE, 1)
    await store.messages.record_attempts([replace(
        finished(claim, MessageStatus.HELD, count_attempt=False, held_for_relay=True,
                 hold_reason="relay b needs attention", finished_at=at(2)),
        relay="a,b", hold_relay="b")])

    assert await store.messages.release_relay("a", at(10)) == 0
    assert (await store.messages.get("two-relays")).message.status is MessageStatus.HELD
    assert await store.messages.release_relay("b", at(10)) == 1
    assert (await store.messages.get("two-relays")).message.status is MessageStatus.QUEUED


async def test_hold_relay_then_release_another_relay_keeps_it_held(store: Store) -> None:
    two = replace(new_message(id="m2"), recipients=[NewRecipient("x@example.com", "to", "a"),
                                                     NewRecipient("y@example.com", "to", "b")])
    await store.messages.enqueue(two)
    await store.messages.hold_relay("b", at(10), "relay b needs attention", AUTH_ALERT)

    assert await store.messages.release_relay("a", at(20)) == 0
    assert await store.messages.release_relay("b", at(20)) == 1
