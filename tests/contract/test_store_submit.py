"""enqueue, idempotency, look-ups, get, append_event."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest

from outbox.core.model import Event, EventType, Hold, MessageStatus, RecipientStatus
from outbox.errors import NotFound, OutboxError, StorageError
from outbox.store.base import IdempotencyClaim, NewMessage, NewRecipient, Store
from outbox.store.sql import queries
from outbox.store.values import BlobUse
from tests.contract.conftest import OpenStore
from tests.contract.support import LEASE, T0, TODAY_CONTENT, at, new_message
from tests.dbsql import scalar


async def test_enqueue_then_get_round_trips_every_field(store: Store) -> None:
    new = NewMessage(
        id="m1", message_id="<m1@outbox.test>", sender="Sender <s@example.com>",
        recipients=[NewRecipient("z@example.com", "to", "default"),
                    NewRecipient("a@example.com", "cc", "internal", "alias:team"),
                    NewRecipient("m@example.com", "bcc", "default", "group:ops")],
        content=TODAY_CONTENT, accepted_at=T0, owner="app",
        metadata={"ticket": 42, "tags": ["a", "b"]},
    )
    created, is_new = await store.messages.enqueue(new)
    detail = await store.messages.get("m1")

    assert is_new
    assert detail.message == created
    message = detail.message
    assert (message.status, message.attempts, message.due_at) == (MessageStatus.QUEUED, 0, T0)
    assert message.content == new.content and message.metadata == new.metadata
    assert message.owner == "app"
    assert [(r.address, r.kind, r.relay, r.provenance) for r in message.recipients] == [
        ("z@example.com", "to", "default", ""), ("a@example.com", "cc", "internal", "alias:team"),
        ("m@example.com", "bcc", "default", "group:ops")]
    assert all(r.status is RecipientStatus.PENDING for r in message.recipients)
    assert [(e.type, e.at) for e in detail.events] == [(EventType.QUEUED, T0)]


async def test_a_long_recipient_list_and_a_group_commit_round_trip_in_order(
        store: Store) -> None:
    """Recipients are written in bulk (sql/recipient_rows.py: the driver's executemany on
    SQLite, one array per column on PostgreSQL): every field, in order, per message, also
    when messages share one commit."""
    kinds, relays = ("to", "cc", "bcc"), ("default", "internal")
    big = [NewRecipient(f"r{n}@example.com", kinds[n % 3], relays[n % 2],
                        f"group:g{n % 7}" if n % 5 else "") for n in range(1_200)]
    messages = [NewMessage(id=f"m{i}", message_id=f"<m{i}@outbox.test>",
                           sender="s@example.com", recipients=recipients,
                           content=TODAY_CONTENT, accepted_at=T0, owner="app")
                for i, recipients in enumerate([big, big[7:9], [big[0]]])]

    await asyncio.gather(*(store.messages.enqueue(m) for m in messages))

    for new in messages:
        stored = (await store.messages.get(new.id)).message.recipients
        assert [(r.address, r.kind, r.relay, r.provenance, r.status) for r in stored] == [
            (r.address, r.kind, r.relay, r.provenance, RecipientStatus.PENDING)
            for r in new.recipients]


async def test_times_come_back_as_utc(store: Store) -> None:
    plus_two = datetime(2030, 1, 1, 14, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    await store.messages.enqueue(new_message(id="m1", accepted_at=plus_two))

    message = (await store.messages.get("m1")).message

    assert message.created_at == plus_two
    assert message.created_at.tzinfo == UTC and message.created_at.microsecond == 123456
    assert message.due_at == plus_two
    just_before = plus_two - timedelta(microseconds=1)
    assert await store.messages.claim_due("w", just_before, plus_two + LEASE, 1) == []
    assert len(await store.messages.claim_due("w", plus_two, plus_two + LEASE, 1)) == 1


async def test_naive_datetimes_are_refused(store: Store) -> None:
    with pytest.raises(ValueError):
        await store.messages.enqueue(new_message(accepted_at=datetime(2030, 1, 1)))
    with pytest.raises(StorageError):
        await store.messages.claim_due("w", datetime(2030, 1, 1), datetime(2030, 1, 2), 1)


async def test_a_message_held_at_submit_is_not_claimable(store: Store) -> None:
    await store.messages.enqueue(new_message(id="m1", hold=Hold("policy")))

    detail = await store.messages.get("m1")

    assert detail.message.status is MessageStatus.HELD and detail.message.due_at is None
    assert detail.message.hold_reason == "policy"
    assert [(e.type, e.detail) for e in detail.events] == [(EventType.HELD, "policy")]
    assert await store.messages.claim_due("w", at(60), at(120), 10) == []


async def test_same_idempotency_key_twice_stores_one_message(store: Store) -> None:
    key = IdempotencyClaim("app", "key-1", "hash-1")
    first, created = await store.messages.enqueue(new_message(id="m1", idempotency=key))

    again, created_again = await store.messages.enqueue(
        new_message(id="m2", idempotency=IdempotencyClaim("app", "key-1", "hash-2")))

    assert created and not created_again
    assert again.id == "m1" == first.id
    assert await store.messages.find_by_idempotency_key("app", "key-1") == (again, "hash-1")
    assert (await store.messages.stats()).by_status["queued"] == 1
    with pytest.raises(NotFound):
        await store.messages.get("m2")


async def test_idempotency_keys_are_scoped_by_owner(store: Store) -> None:
    await store.messages.enqueue(new_message(id="m1",
                                             idempotency=IdempotencyClaim("app", "k", "h")))
    _, created = await store.messages.enqueue(
        new_message(id="m2", idempotency=IdempotencyClaim("other", "k", "h")))

    assert created
    assert await store.messages.find_by_idempotency_key("nobody", "k") is None


async def test_concurrent_enqueues_with_one_key_store_exactly_one(
        store: Store, open_stores: OpenStore) -> None:
    stores = [store, *[await open_stores() for _ in range(3)]]
    messages = [new_message(idempotency=IdempotencyClaim("app", "race", f"h{i}"))
                for i in range(20)]

    results = await asyncio.gather(*(stores[i % 4].messages.enqueue(m)
                                     for i, m in enumerate(messages)))

    assert sum(created for _, created in results) == 1
    assert len({message.id for message, _ in results}) == 1
    assert sum((await store.messages.stats()).by_status.values()) == 1


async def test_a_reused_id_fails_alone(store: Store) -> None:
    first, clash, other = new_message(id="m1"), new_message(id="m1"), new_message(id="m2")

    results = await asyncio.gather(store.messages.enqueue(first), store.messages.enqueue(clash),
                                   store.messages.enqueue(other), return_exceptions=True)

    assert sorted(type(r).__name__ for r in results[:2]) == ["Conflict", "tuple"]
    assert results[2] == ((await store.messages.get("m2")).message, True)
    assert sum((await store.messages.stats()).by_status.values()) == 2


async def test_find_by_message_id_is_scoped_by_owner(store: Store) -> None:
    plain = new_message(owner="app")
    keyed = new_message(idempotency=IdempotencyClaim("app", "k", "h"))
    await store.messages.enqueue(plain)
    await store.messages.enqueue(keyed)

    for submitted in (plain, keyed):
        found = await store.messages.find_by_message_id("app", submitted.message_id)
        assert found is not None and found.id == submitted.id
    assert await store.messages.find_by_message_id("other", plain.message_id) is None
    assert await store.messages.find_by_message_id("app", "<nope@x>") is None


async def test_unknown_ids_raise_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        await store.messages.get("nope")
    with pytest.raises(NotFound):
        await store.messages.attempts("nope")
    with pytest.raises(NotFound):
        await store.messages.append_event("nope", Event(T0, EventType.ALERT))


async def test_append_event_adds_to_the_timeline_in_order(store: Store) -> None:
    await store.messages.enqueue(new_message(id="m1"))
    note = Event(at(5), EventType.ALERT, attempt=2, recipient="alice@example.com",
                 reply_code=535, enhanced_code="5.7.8", reply="bad credentials",
                 guidance="auth.failed", detail="check the relay password")

    await store.messages.append_event("m1", note)
    await store.messages.append_event("m1", Event(at(1), EventType.ALERT, detail="second"))

    events = (await store.messages.get("m1")).events
    assert events[1:] == (note, Event(at(1), EventType.ALERT, detail="second"))


async def test_a_group_is_written_whole_or_not_at_all(store: Store, db_url: str) -> None:
    """A group commit's insert runs without a transaction on PostgreSQL (one statement,
    sql/group_insert.py): a message that cannot be written (its blob use names no
    stored file) must take the others of its statement down with it, as a rolled-back
    transaction does on SQLite."""
    fine, broken = new_message(), replace(new_message(), blobs=(BlobUse("0" * 64),))
    run = store._run  # type: ignore[attr-defined]  # the runner GroupCommit uses
    with pytest.raises(OutboxError):
        await run.write_alone(queries.insert_all, [fine, broken])
    for table in ("messages", "recipients", "events", "blob_refs"):
        assert int(scalar(db_url, f"SELECT count(*) FROM {table}")) == 0, table
    await run.write_alone(queries.insert_all, [fine])
    assert (await store.messages.get(fine.id)).message.recipients[0].address == \
        "alice@example.com"
