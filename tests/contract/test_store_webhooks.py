"""Event webhooks in the store: a delivery per subscribed endpoint is written with the
event by every verb that records events; claims hide a delivery for its lease and
never hand one out twice; results, streaks, the log and redelivery."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import Connection, select

from outbox.core.model import Event, EventType, MessageStatus
from outbox.errors import InputError, NotFound
from outbox.store.base import Store
from outbox.store.sql.queries import insert_events
from outbox.store.tables import events
from outbox.store.webhook_values import DeliveryResult, DueDelivery, WebhookEndpoint
from tests.contract.conftest import OpenStore
from tests.contract.support import HELD, LEASE, T0, at, finished, new_message

ALL = ("queued", "sent", "partially_sent", "deferred", "failed", "held", "released",
       "uncertain", "cancelled")


def endpoint(id: str = "wh_a", events: tuple[str, ...] = ALL,
             batch_size: int = 1) -> WebhookEndpoint:
    return WebhookEndpoint(id=id, url=f"https://hooks.example.com/{id}", events=events,
                           secret="sealed-secret", batch_size=batch_size, created_at=T0,
                           description="test endpoint")


async def claim_requests(store: Store, seconds: float = 100, token: str = "tok",
                         requests: int = 100) -> list[tuple[DueDelivery, ...]]:
    now = at(seconds)
    return await store.webhooks.claim_deliveries(now, now + timedelta(seconds=30), token,
                                                 requests, 100)


async def claim_all(store: Store, seconds: float = 100, token: str = "tok") -> list[DueDelivery]:
    return [d for request in await claim_requests(store, seconds, token) for d in request]


def ok(delivery: DueDelivery, seconds: float = 101) -> DeliveryResult:
    return DeliveryResult(delivery.id, delivery.token, True, at(seconds), response_status=200)


def failed(delivery: DueDelivery, seconds: float = 101,
           next_in: float | None = 5) -> DeliveryResult:
    next_at = at(seconds + next_in) if next_in is not None else None
    return DeliveryResult(delivery.id, delivery.token, False, at(seconds), 500, "HTTP 500",
                          next_at)


async def test_every_verb_that_records_an_event_writes_its_delivery(store: Store) -> None:
    await store.webhooks.add_endpoint(endpoint())
    await store.messages.enqueue(new_message(id="m1", to=("ann@x.test",)))
    await store.messages.enqueue(new_message(id="m2", hold=HELD))
    (claim,) = await store.messages.claim_due("w", at(1), at(1) + LEASE, 1)
    await store.messages.record_attempts([finished(claim, MessageStatus.SENT)])
    await store.messages.retry("m2", at(2))  # held → released
    await store.messages.cancel("m2", at(3))

    due = await claim_all(store)

    seen = [(d.facts.message_id, d.facts.event.type.value) for d in due]
    assert seen == [("m1", "queued"), ("m2", "held"), ("m1", "sent"), ("m2", "released"),
                    ("m2", "cancelled")]
    sent = due[2].facts
    assert (sent.event.recipient, sent.event.reply_code) == ("ann@x.test", 250)
    assert sent.header_message_id == "<m1@outbox.test>"
    assert sent.metadata == {"n": sent.metadata["n"]}
    assert len({d.facts.event_id for d in due}) == 5  # each its own event


async def test_only_subscribed_and_enabled_endpoints_get_deliveries(store: Store) -> None:
    await store.webhooks.add_endpoint(endpoint("wh_sent", events=("sent",)))
    await store.webhooks.add_endpoint(endpoint("wh_all"))
    await store.webhooks.add_endpoint(endpoint("wh_off"))
    assert await store.webhooks.set_endpoint_enabled("wh_off", False, "test", at(0))
    await store.messages.enqueue(new_message(id="m1"))
    (claim,) = await store.messages.claim_due("w", at(1), at(1) + LEASE, 1)
    await store.messages.record_attempts([finished(claim, MessageStatus.SENT)])

    due = await claim_all(store)

    assert sorted((d.endpoint_id, d.facts.event.type.value) for d in due) == [
        ("wh_all", "queued"), ("wh_all", "sent"), ("wh_sent", "sent")]


async def test_a_large_attempt_writes_a_delivery_for_each_of_its_events(store: Store) -> None:
    await store.webhooks.add_endpoint(endpoint(events=("sent",), batch_size=100))
    to = [f"r{i}@x.test" for i in range(400)]
    await store.messages.enqueue(new_message(id="m1", to=to))
    (claim,) = await store.messages.claim_due("w", at(1), at(1) + LEASE, 1)
    await store.messages.record_attempts([finished(claim, MessageStatus.SENT)])

    due = await claim_all(store)

    assert sorted(d.facts.event.recipient or "" for d in due) == sorted(to)
    assert {d.facts.event.type for d in due} == {EventType.SENT}


async def test_without_endpoints_events_are_recorded_as_before(store: Store) -> None:
    ids = [f"m{i}" for i in range(5)]
    await asyncio.gather(*(store.messages.enqueue(new_message(id=id)) for id in ids))
    for id in ids:
        assert [e.type for e in (await store.messages.get(id)).events] == [EventType.QUEUED]
    assert await claim_all(store) == []


async def test_a_claimed_delivery_is_hidden_until_its_lease_ends(
        store: Store, open_stores: OpenStore) -> None:
    other = await open_stores()
    await store.webhooks.add_endpoint(endpoint(events=("queued",)))
    await store.messages.enqueue(new_message(id="m1"))

    first, second = await asyncio.gather(claim_all(store, token="a"),
                                         claim_all(other, token="b"))

    assert len(first) + len(second) == 1  # never handed out twice
    assert await claim_all(store, seconds=120, token="c") == []  # lease: until 130
    (again,) = await claim_all(store, seconds=131, token="d")  # the claimer died
    assert again.attempts == 0 and again.token == "d"


async def test_results_finish_deliveries_and_keep_the_endpoints_streak(store: Store) -> None:
    await store.webhooks.add_endpoint(endpoint(events=("queued",)))
    for id in ("m1", "m2", "m3"):
        await store.messages.enqueue(new_message(id=id))
    d1, d2, d3 = await claim_all(store)

    streaks = await store.webhooks.record_deliveries(
        [failed(d1, 101), failed(d2, 102, next_in=None), ok(d3, 100)])

    (streak,) = streaks
    assert (streak.endpoint_id, streak.failures, streak.failing_since) == ("wh_a", 2, at(101))
    log = {e.message_id: e for e in await store.webhooks.delivery_log("wh_a", 10)}
    assert (log["m1"].status, log["m1"].attempts, log["m1"].next_at) == ("pending", 1, at(106))
    assert (log["m1"].response_status, log["m1"].error) == (500, "HTTP 500")
    assert (log["m2"].status, log["m2"].next_at) == ("failed", None)
    assert (log["m3"].status, log["m3"].delivered_at) == ("delivered", at(100))
    (retry,) = await claim_all(store, seconds=106, token="t2")
    assert (retry.facts.message_id, retry.attempts) == ("m1", 1)
    (streak,) = await store.webhooks.record_deliveries([ok(retry, 107)])
    assert (streak.failures, streak.failing_since) == (0, None)
    endpoint_now = await store.webhooks.get_endpoint("wh_a")
    assert endpoint_now.last_success_at == at(107)


async def test_a_result_whose_claim_was_taken_over_is_ignored(store: Store) -> None:
    await store.webhooks.add_endpoint(endpoint(events=("queued",)))
    await store.messages.enqueue(new_message(id="m1"))
    (stale,) = await claim_all(store, token="old")
    (current,) = await claim_all(store, seconds=131, token="new")

    assert await store.webhooks.record_deliveries([ok(stale)]) == []
    (log,) = await store.webhooks.delivery_log("wh_a", 10)
    assert (log.status, log.attempts) == ("pending", 0)
    assert len(await store.webhooks.record_deliveries([ok(current, 132)])) == 1


async def test_deliveries_of_a_disabled_endpoint_wait_until_it_is_enabled(
        store: Store) -> None:
    await store.webhooks.add_endpoint(endpoint(events=("queued",)))
    await store.messages.enqueue(new_message(id="m1"))
    assert await store.webhooks.set_endpoint_enabled("wh_a", False, "down for a day", at(5))
    assert not await store.webhooks.set_endpoint_enabled("wh_a", False, "again", at(6))

    assert await claim_all(store) == []
    disabled = await store.webhooks.get_endpoint("wh_a")
    assert (disabled.is_enabled, disabled.disabled_reason) == (False, "down for a day")
    assert await store.webhooks.set_endpoint_enabled("wh_a", True, "", at(7))
    assert len(await claim_all(store)) == 1


async def test_redeliver_makes_an_event_due_again(store: Store) -> None:
    await store.webhooks.add_endpoint(endpoint("wh_a", events=("queued",)))
    await store.messages.enqueue(new_message(id="m1"))
    (delivery,) = await claim_all(store)
    await store.webhooks.record_deliveries([ok(delivery)])
    event_id = delivery.facts.event_id

    assert await store.webhooks.redeliver(event_id, None, at(200)) == 1
    (again,) = await claim_all(store, seconds=200)
    assert (again.facts.event_id, again.attempts, again.created_at) == (event_id, 1, at(200))
    await store.webhooks.record_deliveries([ok(again, 201)])
    await store.webhooks.add_endpoint(endpoint("wh_b", events=("queued",)))
    assert await store.webhooks.redeliver(event_id, "wh_b", at(300)) == 1  # never had it
    assert [d.endpoint_id for d in await claim_all(store, seconds=300)] == ["wh_b"]
    with pytest.raises(NotFound):
        await store.webhooks.redeliver(event_id + 100, "wh_a", at(300))
    with pytest.raises(NotFound):
        await store.webhooks.redeliver(event_id + 100, None, at(300))


def event_ids(conn: Connection) -> dict[str, int]:
    return {row.type: row.id for row in conn.execute(select(events.c.type, events.c.id))}


async def test_redeliver_sends_an_endpoint_only_a_type_it_subscribes_to(store: Store) -> None:
    """Not a type it left out, nor an internal one that no endpoint can subscribe to
    (`claimed` says which process claimed the message): InputError naming both."""
    await store.webhooks.add_endpoint(endpoint("wh_sent", events=("sent",)))
    await store.webhooks.add_endpoint(endpoint("wh_all", events=ALL))
    await store.messages.enqueue(new_message(id="m1"))
    await store.messages.claim_due("worker-1", at(1), at(1) + LEASE, 1)
    ids = await store._run.read(event_ids)  # type: ignore[attr-defined]

    with pytest.raises(InputError) as left_out:
        await store.webhooks.redeliver(ids["queued"], "wh_sent", at(2))
    assert left_out.value.field == "event_id"
    assert left_out.value.message == (
        f"endpoint wh_sent does not subscribe to 'queued' events (it subscribes to: sent), "
        f"so evt_{ids['queued']} cannot be redelivered to it")
    with pytest.raises(InputError, match="does not subscribe to 'claimed' events"):
        await store.webhooks.redeliver(ids["claimed"], "wh_all", at(2))
    due = await claim_all(store)
    assert [(d.endpoint_id, d.facts.event.type) for d in due] == [("wh_all", "queued")]


async def test_endpoints_are_listed_and_deleted_with_their_deliveries(store: Store) -> None:
    await store.webhooks.add_endpoint(endpoint("wh_a"))
    await store.webhooks.add_endpoint(endpoint("wh_b", events=("sent", "failed"), batch_size=50))
    await store.messages.enqueue(new_message(id="m1"))

    listed = await store.webhooks.list_endpoints()
    assert [(e.id, e.events, e.batch_size) for e in listed] == [
        ("wh_a", ALL, 1), ("wh_b", ("sent", "failed"), 50)]
    await store.webhooks.delete_endpoint("wh_a")
    assert [e.id for e in await store.webhooks.list_endpoints()] == ["wh_b"]
    assert await claim_all(store) == []
    with pytest.raises(NotFound):
        await store.webhooks.delete_endpoint("wh_a")
    with pytest.raises(NotFound):
        await store.webhooks.delivery_log("wh_a", 10)


async def test_an_endpoint_that_batches_gets_its_events_in_requests_of_its_size(
        store: Store) -> None:
    await store.webhooks.add_endpoint(endpoint("wh_batch", events=("queued",), batch_size=3))
    await store.webhooks.add_endpoint(endpoint("wh_one", events=("queued",)))
    for i in range(7):
        await store.messages.enqueue(new_message(id=f"m{i}", accepted_at=at(i)))

    requests = await claim_requests(store, requests=4)

    assert [(r[0].endpoint_id, [d.facts.message_id for d in r]) for r in requests] == [
        ("wh_batch", ["m0", "m1", "m2"]), ("wh_one", ["m0"]), ("wh_one", ["m1"]),
        ("wh_one", ["m2"])]
    rest = await claim_requests(store, requests=10)
    assert sorted(len(r) for r in rest) == [1, 1, 1, 1, 1, 3]  # m6 of wh_batch alone


async def test_the_log_pages_newest_first(store: Store) -> None:
    await store.webhooks.add_endpoint(endpoint(events=("queued",)))
    for i in range(5):
        await store.messages.enqueue(new_message(id=f"m{i}", accepted_at=at(i)))
    page = await store.webhooks.delivery_log("wh_a", 3)
    assert [e.message_id for e in page] == ["m4", "m3", "m2"]
    rest = await store.webhooks.delivery_log("wh_a", 3, before=page[-1].id)
    assert [e.message_id for e in rest] == ["m1", "m0"]


async def test_many_events_of_a_few_shapes_read_back_in_order_with_their_deliveries(
        store: Store) -> None:
    """PostgreSQL sends what events share once (sql/webhook_events.py): events whose shapes
    alternate must still come back in the order written, each with its own fields, and
    one delivery each."""
    await store.webhooks.add_endpoint(endpoint(events=("deferred", "failed"), batch_size=100))
    await store.messages.enqueue(new_message(id="m1"))
    moment = T0 + timedelta(seconds=5)
    shapes = [dict(type=EventType.DEFERRED, reply_code=421, reply="busy", detail="next at 1"),
              dict(type=EventType.FAILED, reply_code=550, reply="no such user", detail=""),
              dict(type=EventType.DEFERRED, reply_code=421, reply="busy", detail="next at 2")]
    written = [Event(at=moment, attempt=1, recipient=f"r{i}@x.test", **shapes[i * 7 % 3])
               for i in range(600)]

    await store._run.write(insert_events, [("m1", e) for e in written])  # type: ignore[attr-defined]

    found = [e for e in (await store.messages.get("m1")).events if e.recipient]
    assert found == written
    due = await claim_all(store)
    assert sorted((d.facts.event.recipient, d.facts.event.type) for d in due) == sorted(
        (e.recipient, e.type) for e in written)
