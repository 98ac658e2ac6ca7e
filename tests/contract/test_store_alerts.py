"""The operations verbs: alerts (raise once, clear once, list), recent outcomes per
relay, and the database's description."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime

from outbox.core.model import MessageStatus
from outbox.store.base import ClockReading, Store
from outbox.store.factory import open_store
from tests.contract.conftest import EmptyDatabase, OpenStore
from tests.contract.support import LEASE, at, finished, new_message


async def raise_one(store: Store, key: str = "relay.default.failure_rate", seconds: float = 0,
                    detail: str = "8 of 10 attempts did not deliver") -> bool:
    return await store.alerts.raise_alert(key, "warning", "Relay default keeps failing", detail,
                                          "relay_failure_rate", at(seconds))


async def test_an_alert_is_raised_once_and_listed_while_active(store: Store) -> None:
    assert await raise_one(store) is True
    assert await raise_one(store, seconds=5, detail="another detail") is False

    (alert,) = await store.alerts.list_alerts(active_only=True)
    assert (alert.key, alert.severity, alert.title, alert.guidance) == (
        "relay.default.failure_rate", "warning", "Relay default keeps failing",
        "relay_failure_rate")
    assert (alert.detail, alert.raised_at, alert.cleared_at) == (
        "8 of 10 attempts did not deliver", at(0), None)
    assert alert.is_active


async def test_a_cleared_alert_leaves_the_active_list_and_can_be_raised_again(
        store: Store) -> None:
    await raise_one(store, seconds=0)
    assert await store.alerts.clear_alert("relay.default.failure_rate", at(10)) is True
    assert await store.alerts.clear_alert("relay.default.failure_rate", at(11)) is False
    assert await store.alerts.list_alerts(active_only=True) == ()

    assert await raise_one(store, seconds=20) is True
    history = await store.alerts.list_alerts(active_only=False)
    assert [(a.raised_at, a.cleared_at) for a in history] == [(at(20), None), (at(0), at(10))]
    assert [a.is_active for a in history] == [True, False]


async def test_clearing_an_alert_never_raised_changes_nothing(store: Store) -> None:
    assert await store.alerts.clear_alert("queue.held", at(1)) is False
    assert await store.alerts.list_alerts(active_only=False) == ()


async def test_alerts_with_different_keys_are_independent(store: Store) -> None:
    assert await raise_one(store, "relay.a.failure_rate", seconds=1)
    assert await raise_one(store, "relay.b.failure_rate", seconds=2)
    assert await store.alerts.clear_alert("relay.a.failure_rate", at(3))
    active = await store.alerts.list_alerts(active_only=True)
    assert [a.key for a in active] == ["relay.b.failure_rate"]
    assert len(await store.alerts.list_alerts(active_only=False, limit=1)) == 1


async def test_two_nodes_raising_the_same_alert_at_once_raise_it_once(
        store: Store, open_stores: OpenStore) -> None:
    others = [await open_stores() for _ in range(3)]
    results = await asyncio.gather(*(raise_one(s) for s in [store, *others] * 2))
    assert results.count(True) == 1
    assert len(await store.alerts.list_alerts(active_only=False)) == 1


async def finish(store: Store, status: MessageStatus, relay: str, seconds: float,
                 held_for: str = "") -> None:
    """One attempt through `relay` ("a,b": two relays); a held one is held for the
    relay `held_for` (its credentials, say), or for itself (a damaged file) if ""."""
    message = new_message(accepted_at=at(seconds))
    await store.messages.enqueue(message)
    (claim,) = await store.messages.claim_due("w", at(seconds), at(seconds) + LEASE, 1)
    record = finished(claim, status, finished_at=at(seconds + 1),
                      due_at=at(9999) if status is MessageStatus.DEFERRED else None,
                      held_for_relay=bool(held_for))
    await store.messages.record_attempts([replace(record, relay=relay, hold_relay=held_for)])


async def test_relay_outcomes_count_recent_attempts_by_relay_and_outcome(store: Store) -> None:
    await finish(store, MessageStatus.DEFERRED, "default", 0)  # finished at 1: too old
    for seconds in (10, 20, 30):
        await finish(store, MessageStatus.DEFERRED, "default", seconds)
    await finish(store, MessageStatus.SENT, "default", 40)
    await finish(store, MessageStatus.SENT, "backup", 50)
    await finish(store, MessageStatus.HELD, "default,backup", 60, held_for="default")

    assert await store.alerts.relay_outcomes(at(5)) == {  # one attempt, two relays
        "default": {"deferred": 3, "sent": 1, "held": 1},
        "backup": {"sent": 1, "held_message": 1},  # default holds it, not backup
    }
    assert await store.alerts.relay_outcomes(at(61)) == {"default": {"held": 1},
                                                   "backup": {"held_message": 1}}
    assert await store.alerts.relay_outcomes(at(1000)) == {}


async def test_latest_outcomes_name_each_relays_newest_attempt(store: Store) -> None:
    for seconds in (10, 20, 30):
        await finish(store, MessageStatus.DEFERRED, "default", seconds)
    await finish(store, MessageStatus.SENT, "default", 40)
    await finish(store, MessageStatus.SENT, "backup", 50)
    await finish(store, MessageStatus.HELD, "default,backup", 45, held_for="default")

    assert await store.alerts.latest_outcomes(at(5)) == {"default": "held", "backup": "sent"}
    assert await store.alerts.latest_outcomes(at(47)) == {"backup": "sent"}
    assert await store.alerts.latest_outcomes(at(1000)) == {}


async def test_a_message_held_for_itself_is_no_held_attempt_of_its_relay(
        store: Store) -> None:
    """A corrupt attachment holds the message, not the relay: its attempt counts as
    held_message, and the relay's newest attempt is still its last real one."""
    await finish(store, MessageStatus.SENT, "picky", 10)
    await finish(store, MessageStatus.HELD, "picky", 20)  # held for itself
    await finish(store, MessageStatus.HELD, "down", 30, held_for="down")

    assert await store.alerts.relay_outcomes(at(5)) == {
        "picky": {"sent": 1, "held_message": 1}, "down": {"held": 1}}
    assert await store.alerts.latest_outcomes(at(5)) == {"picky": "sent", "down": "held"}
    assert await store.alerts.latest_outcomes(at(15)) == {"down": "held"}


async def test_an_active_alerts_text_is_refreshed_in_place(store: Store) -> None:
    await raise_one(store, seconds=0, detail="3 of 3 attempts did not deliver")
    assert await store.alerts.refresh_alert("relay.default.failure_rate", "New title",
                                            "6 of 6 attempts did not deliver", "smtp.451")
    (alert,) = await store.alerts.list_alerts(active_only=True)
    assert (alert.title, alert.detail, alert.guidance, alert.raised_at) == (
        "New title", "6 of 6 attempts did not deliver", "smtp.451", at(0))
    assert not await store.alerts.refresh_alert("relay.default.failure_rate", "New title",
                                                "6 of 6 attempts did not deliver", "smtp.451")
    await store.alerts.clear_alert("relay.default.failure_rate", at(1))
    assert not await store.alerts.refresh_alert("relay.default.failure_rate", "t", "d", "g")
    (cleared,) = await store.alerts.list_alerts(active_only=False)
    assert cleared.detail == "6 of 6 attempts did not deliver"


async def test_clock_readings_keep_the_newest_per_source(store: Store) -> None:
    first = ClockReading("delivery on a", "the database server", 400.0, at(10))
    await store.alerts.record_clock_reading(first)
    await store.alerts.record_clock_reading(replace(first, skew_seconds=-2.5,
                                                    measured_at=at(20)))
    token = ClockReading("delivery on a", "the OAuth2 token endpoint", -600.0, at(15))
    await store.alerts.record_clock_reading(token)

    assert await store.alerts.clock_readings(at(0)) == (
        ClockReading("delivery on a", "the database server", -2.5, at(20)), token)
    assert await store.alerts.clock_readings(at(16)) == (
        ClockReading("delivery on a", "the database server", -2.5, at(20)),)


async def test_the_database_describes_itself(store: Store, backend: str) -> None:
    info = await store.describe_database()
    assert info.backend == backend
    assert info.version and info.version[0].isdigit()
    assert info.is_migrated and info.revision == info.head
    if backend == "postgresql":
        assert info.server_time is not None and info.server_time.tzinfo is not None
        assert abs((info.server_time - datetime.now(UTC)).total_seconds()) < 3600
    else:
        assert info.server_time is None, "SQLite's clock is this machine's"


async def test_an_empty_database_is_described_as_not_migrated(
        empty_databases: EmptyDatabase) -> None:
    url = await empty_databases()
    store = await open_store(url)
    try:
        info = await store.describe_database()
    finally:
        await store.close()
    assert info.revision is None and not info.is_migrated
