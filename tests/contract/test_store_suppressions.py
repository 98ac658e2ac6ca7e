"""The suppression list and bounces in the store, on both backends."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest

from outbox.core.model import Event, EventType, RecipientStatus
from outbox.core.suppression import Suppression, SuppressionReason
from outbox.store.base import BounceRecord, NewMessage, RecipientsSuppressed, Store
from tests.contract.support import T0, at, new_message
from tests.contract.test_store_webhooks import claim_all, endpoint


def entry(address: str, reason: SuppressionReason = SuppressionReason.MANUAL,
          **kwargs: object) -> Suppression:
    return Suppression(address, reason, kwargs.pop("created_at", T0), **kwargs)  # type: ignore[arg-type]


async def test_add_find_list_remove(store: Store) -> None:
    facet = store.suppressions
    assert await facet.add_suppression(entry("Ann@Example.COM", detail="asked"))
    assert not await facet.add_suppression(entry("ann@example.com",
                                                 SuppressionReason.COMPLAINT))
    assert await facet.add_suppression(entry("bob@example.com"))
    found = await facet.find_suppressed(["ANN@example.com", "carl@example.com"], at(1))
    assert list(found) == ["ann@example.com"]
    assert found["ann@example.com"].reason is SuppressionReason.COMPLAINT  # replaced
    listed = await facet.list_suppressions(10)
    assert [e.address for e in listed] == ["ann@example.com", "bob@example.com"]
    assert [e.address for e in await facet.list_suppressions(10, after="ann@example.com")] \
        == ["bob@example.com"]
    assert await facet.remove_suppression("ANN@example.com")
    assert not await facet.remove_suppression("ann@example.com")
    assert await facet.find_suppressed(["ann@example.com"], at(1)) == {}


async def test_an_expired_entry_no_longer_suppresses(store: Store) -> None:
    facet = store.suppressions
    await facet.add_suppression(entry("x@example.com", expires_at=at(60)))
    assert "x@example.com" in await facet.find_suppressed(["x@example.com"], at(59))
    assert await facet.find_suppressed(["x@example.com"], at(61)) == {}
    assert await facet.add_suppression(entry("x@example.com", created_at=at(61)))


async def test_a_bounce_updates_the_recipient_adds_the_event_and_suppresses(
        store: Store) -> None:
    message, _ = await store.messages.enqueue(new_message(to=("a@example.com",
                                                              "B@example.com")))
    event = Event(at(5), EventType.BOUNCED, recipient="b@example.com", reply_code=550,
                  enhanced_code="5.1.1", reply="550 5.1.1 user unknown", guidance="smtp.5.1.1")
    suppression = Suppression("b@example.com", SuppressionReason.HARD_BOUNCE, at(5),
                              "5.1.1 user unknown", message.id)
    bounce = BounceRecord(message.id, "b@example.com", event, RecipientStatus.BOUNCED, 550,
                          "5.1.1", "550 5.1.1 user unknown", "smtp.5.1.1", suppression)
    assert await store.suppressions.record_bounce(bounce)
    detail = await store.messages.get(message.id)
    statuses = {r.address: (r.status, r.enhanced_code, r.guidance)
                for r in detail.message.recipients}
    assert statuses == {"a@example.com": (RecipientStatus.PENDING, None, None),
                        "B@example.com": (RecipientStatus.BOUNCED, "5.1.1", "smtp.5.1.1")}
    assert detail.events[-1].type is EventType.BOUNCED
    found = await store.suppressions.find_suppressed(["b@example.com"], at(6))
    assert found["b@example.com"].source_message == message.id


async def test_a_bounce_for_an_unknown_recipient_writes_nothing(store: Store) -> None:
    message, _ = await store.messages.enqueue(new_message(to=("a@example.com",)))
    event = Event(at(5), EventType.BOUNCED, recipient="zz@example.com")
    suppression = Suppression("zz@example.com", SuppressionReason.HARD_BOUNCE, at(5))
    assert not await store.suppressions.record_bounce(
        BounceRecord(message.id, "zz@example.com", event, RecipientStatus.BOUNCED,
                     suppression=suppression))
    assert not await store.suppressions.record_bounce(
        BounceRecord("no-such-message", "a@example.com", event))
    assert await store.suppressions.find_suppressed(["zz@example.com"], at(6)) == {}
    assert (await store.messages.get(message.id)).events[-1].type is EventType.QUEUED


async def test_a_bounce_and_a_complaint_reach_subscribed_webhooks(store: Store) -> None:
    await store.webhooks.add_endpoint(endpoint(events=("bounced", "complained")))
    message, _ = await store.messages.enqueue(new_message(to=("a@example.com",)))
    bounced = Event(at(5), EventType.BOUNCED, recipient="a@example.com", reply_code=550,
                    enhanced_code="5.1.1", guidance="smtp.5.1.1")
    complained = Event(at(6), EventType.COMPLAINED, recipient="a@example.com",
                       guidance="bounce.complaint")
    assert await store.suppressions.record_bounce(
        BounceRecord(message.id, "a@example.com", bounced, RecipientStatus.BOUNCED, 550,
                     "5.1.1", "550 5.1.1 no such user", "smtp.5.1.1"))
    assert await store.suppressions.record_bounce(
        BounceRecord(message.id, "a@example.com", complained))
    due = await claim_all(store)
    assert [(d.facts.event.type.value, d.facts.event.enhanced_code) for d in due] == [
        ("bounced", "5.1.1"), ("complained", None)]


def refusing(**kwargs: Any) -> NewMessage:
    return replace(new_message(**kwargs), refuse_suppressed=True)


async def test_a_message_that_refuses_suppressed_recipients_is_not_stored(store: Store) -> None:
    await store.suppressions.add_suppression(entry("Bob@Example.com", detail="asked"))
    await store.suppressions.add_suppression(entry("gone@example.com", expires_at=at(5)))

    with pytest.raises(RecipientsSuppressed) as refused:
        await store.messages.enqueue(refusing(id="m1", to=["ann@example.com", "BOB@example.com"],
                                              accepted_at=at(1)))

    assert list(refused.value.found) == ["bob@example.com"]
    assert refused.value.found["bob@example.com"].detail == "asked"
    assert (await store.messages.stats()).by_status["queued"] == 0
    # An expired entry, or a message that does not ask, is stored.
    _, created = await store.messages.enqueue(refusing(id="m2", to=["gone@example.com"],
                                                       accepted_at=at(6)))
    _, also = await store.messages.enqueue(new_message(id="m3", to=["bob@example.com"]))
    assert created and also
    assert (await store.messages.stats()).by_status["queued"] == 2


async def test_suppressed_recipients_are_found_anywhere_in_a_long_list(store: Store) -> None:
    """The list's keys go to the database as one parameter (a JSON array on SQLite, an
    array on PostgreSQL): entries at both ends of 1,200 recipients are found, and an
    address with quotes and a backslash is compared as it is."""
    odd = '"o\\neil, \\"x"@example.com'
    for address in ("r3@example.com", "R1199@Example.com", odd):
        await store.suppressions.add_suppression(entry(address))
    to = [f"r{n}@example.com" for n in range(1_200)]

    with pytest.raises(RecipientsSuppressed) as refused:
        await store.messages.enqueue(refusing(id="m1", to=[*to, odd.upper()]))

    assert sorted(refused.value.found) == sorted(["r3@example.com", "r1199@example.com",
                                                  odd.lower()])
    _, created = await store.messages.enqueue(refusing(id="m2", to=to[4:1199]))
    assert created


async def test_a_refused_message_leaves_the_others_of_its_commit_alone(store: Store) -> None:
    """SQLite commits messages that arrive together in one transaction (group commit):
    a suppressed recipient fails its own message only."""
    await store.suppressions.add_suppression(entry("bob@example.com"))
    messages = [refusing(id=f"m{i}", to=[f"r{i}@example.com"]) for i in range(20)]
    messages[7] = refusing(id="m7", to=["r7@example.com", "bob@example.com"])

    results = await asyncio.gather(*(store.messages.enqueue(m) for m in messages),
                                   return_exceptions=True)

    assert [i for i, r in enumerate(results) if isinstance(r, RecipientsSuppressed)] == [7]
    assert all(isinstance(r, tuple) and r[1] for i, r in enumerate(results) if i != 7)
    assert (await store.messages.stats()).by_status["queued"] == 19
