"""A relay's mail held and released a chunk per transaction (sql/relay_holds.py), on
both backends: every message at the default chunk, and a hold or release that stops
between chunks when the relay's state changes under it."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import Connection

from outbox.core.model import Event, EventType, MessageStatus
from outbox.errors import StorageError
from outbox.store.base import NEEDS_ATTENTION, RELAY_OK, Store
from outbox.store.sql import relay_auth, relay_holds
from tests.contract.support import at, new_message

ALERT = Event(at(1), EventType.HELD, guidance="smtp.5.7.8", detail="535 on relay default")
REASON = "relay default needs attention"


async def _statuses(store: Store, ids: list[str]) -> dict[MessageStatus, int]:
    """How many of `ids` are in each status: one page of the list per status, not a
    read per message (2,500 of those took 35 s on PostgreSQL in CI)."""
    counts: dict[MessageStatus, int] = {}
    for status in (MessageStatus.QUEUED, MessageStatus.HELD):
        page = await store.messages.list(status, len(ids) + 1, None)
        found = len(set(ids) & {message.id for message in page.messages})
        if found:
            counts[status] = found
    return counts


async def _queue(store: Store, count: int) -> list[str]:
    batch = [new_message(relay="default") for _ in range(count)]
    await store.messages.enqueue_many(batch)
    return [message.id for message in batch]


async def test_more_mail_than_a_chunk_is_held_and_released_whole_at_the_default(
        store: Store) -> None:
    ids = await _queue(store, 2 * relay_holds.CHUNK + 500)  # three chunks each way

    assert await store.relay_auth.hold_for_relay("default", 0, "535", "smtp.5.7.8", at(1),
                                                 REASON, ALERT) == (True, len(ids))
    assert await _statuses(store, ids) == {MessageStatus.HELD: len(ids)}
    assert await store.relay_auth.mark_ok("default", 0, at(2)) == len(ids)
    assert await _statuses(store, ids) == {MessageStatus.QUEUED: len(ids)}

    assert await store.messages.hold_relay("default", at(3), REASON, ALERT) == len(ids)
    assert await store.messages.release_relay("default", at(4)) == len(ids)
    assert await _statuses(store, ids) == {MessageStatus.QUEUED: len(ids)}


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    # Two messages a chunk, so that five messages take three transactions and a change
    # can come in between; the default is tested above.
    monkeypatch.setattr(relay_holds, "CHUNK", 2)


@pytest.mark.usefixtures("small_chunks")
async def test_a_hold_stops_between_chunks_once_new_credentials_arrive(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """New credentials saved while the hold runs: the rest of the mail is never held,
    and what was held is released by the credentials, so nothing waits under a relay
    that is ok."""
    ids = await _queue(store, 5)
    hold_more = relay_auth.hold_more

    def after_new_credentials(conn: Connection, *args: Any) -> int:
        relay_auth.store_credentials(conn, "default", None, at(1))  # committed just before
        return hold_more(conn, *args)

    monkeypatch.setattr(relay_auth, "hold_more", after_new_credentials)
    assert await store.relay_auth.hold_for_relay("default", 0, "535", "smtp.5.7.8", at(1),
                                                 REASON, ALERT) == (True, 2)

    assert await _statuses(store, ids) == {MessageStatus.QUEUED: 5}
    state = await store.relay_auth.load_relay_credentials("default")
    assert (state.state, state.version) == (RELAY_OK, 1)


@pytest.mark.usefixtures("small_chunks")
async def test_a_release_stops_between_chunks_once_the_login_fails_again(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = await _queue(store, 5)
    assert await store.relay_auth.hold_for_relay("default", 0, "535", "smtp.5.7.8", at(1),
                                                 REASON, ALERT) == (True, 5)
    release_more = relay_auth.release_more

    def after_a_failed_login(conn: Connection, relay: str, version: int,
                             now: datetime) -> int:
        relay_auth.set_relay_state(conn, relay, NEEDS_ATTENTION, "535", "smtp.5.7.8", now,
                                   version)
        return release_more(conn, relay, version, now)

    monkeypatch.setattr(relay_auth, "release_more", after_a_failed_login)
    assert await store.relay_auth.mark_ok("default", 0, at(2)) == 2

    assert await _statuses(store, ids) == {MessageStatus.QUEUED: 2, MessageStatus.HELD: 3}


@pytest.mark.usefixtures("small_chunks")
async def test_what_a_release_cut_short_left_held_is_released_by_the_next_look(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """The database gone between two chunks of a release: the relay is ok, three messages
    are still held, and `release_left_held` (each worker's round) releases them."""
    ids = await _queue(store, 5)
    assert await store.relay_auth.hold_for_relay("default", 0, "535", "smtp.5.7.8", at(1),
                                                 REASON, ALERT) == (True, 5)

    def database_gone(*_: Any) -> int:
        raise StorageError("database error: connection refused")

    with monkeypatch.context() as patched:
        patched.setattr(relay_auth, "release_more", database_gone)
        with pytest.raises(StorageError):
            await store.relay_auth.mark_ok("default", 0, at(2))
    assert await _statuses(store, ids) == {MessageStatus.QUEUED: 2, MessageStatus.HELD: 3}

    assert await store.relay_auth.release_left_held("default", at(3)) == 3
    assert await _statuses(store, ids) == {MessageStatus.QUEUED: 5}
    assert await store.relay_auth.release_left_held("default", at(4)) == 0


async def test_mail_held_for_a_relay_that_needs_attention_is_left_held(store: Store) -> None:
    ids = await _queue(store, 3)
    await store.relay_auth.hold_for_relay("default", 0, "535", "smtp.5.7.8", at(1),
                                          REASON, ALERT)
    assert await store.relay_auth.release_left_held("default", at(2)) == 0
    assert await _statuses(store, ids) == {MessageStatus.HELD: 3}


@pytest.mark.parametrize("release", ["mark_ok", "store_credentials"])
async def test_mail_released_for_a_relay_wakes_the_waiting_workers(store: Store,
                                                                     release: str) -> None:
    """Released mail is due at once: a worker waiting for new mail hears of it, as
    after `messages.release_relay`, not at its next poll."""
    await _queue(store, 1)
    assert await store.relay_auth.hold_for_relay("default", 0, "535", "smtp.5.7.8", at(1),
                                                 REASON, ALERT) == (True, 1)
    await store.messages.wait_for_new(0)  # nothing pending before the release
    waiter = asyncio.create_task(store.messages.wait_for_new(30))
    await asyncio.sleep(0.05)
    assert not waiter.done()

    if release == "mark_ok":
        assert await store.relay_auth.mark_ok("default", 0, at(2)) == 1
    else:
        assert await store.relay_auth.store_credentials("default", None, at(2)) == (1, 1)

    await asyncio.wait_for(waiter, 5)
