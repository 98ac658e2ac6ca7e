"""The alert engine (outbox.service.alerts) on a real SQLite store, posting to a real HTTP
server on loopback; time is passed in, so windows pass without waiting."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from outbox.config import AlertSettings, Settings
from outbox.core.alerting import RelayState
from outbox.core.guidance import CATALOGUE
from outbox.core.model import Hold, MessageStatus
from outbox.service.alerts import AlertEngine, Webhook, sign, verify
from outbox.service.health import Health, verdict
from outbox.store.base import Store
from outbox.store.factory import open_store
from outbox.supervision import Loops
from tests.contract.support import LEASE, T0, at, finished, new_message
from tests.webhook import Received, WebhookReceiver

SECRET = "whsec_test_0123456789"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    opened = await open_store(database_url)
    yield opened
    await opened.close()


@pytest.fixture
def hooks() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


def settings(url: str, **values: object) -> AlertSettings:
    base: dict[str, object] = {"webhook_url": url, "webhook_secret": SECRET, "window": "60s",
                               "min_attempts": 3, "failure_ratio": 0.5,
                               "oldest_queued_age": "0s", "held_count": 0}
    return AlertSettings(**{**base, **values})


def health(store: Store, alert_settings: AlertSettings, clock: Clock) -> Health:
    return Health(Settings(alerts=alert_settings), store, Loops(), clock=clock)


def engine(store: Store, alert_settings: AlertSettings, clock: Clock) -> AlertEngine:
    return AlertEngine(store, alert_settings, health(store, alert_settings, clock), clock=clock,
                       webhook=Webhook(alert_settings, retry_delay=0.01))


async def attempt(store: Store, status: MessageStatus, seconds: float,
                  relay: str = "default", held_for_relay: bool = True) -> None:
    """A held attempt is held for the relay (credentials, TLS trust) unless
    `held_for_relay` is False (held for itself: a corrupt attachment)."""
    await store.messages.enqueue(new_message(accepted_at=at(seconds)))
    (claim,) = await store.messages.claim_due("w", at(seconds), at(seconds) + LEASE, 1)
    due = at(seconds + 3600) if status is MessageStatus.DEFERRED else None
    record = finished(claim, status, finished_at=at(seconds), due_at=due,
                      held_for_relay=held_for_relay and status is MessageStatus.HELD)
    await store.messages.record_attempts([replace(record, relay=relay)])


def signed_correctly(request: Received) -> bool:
    header = request.headers["Outbox-Signature"]
    parts = dict(p.split("=", 1) for p in header.split(","))
    expected = hmac.new(SECRET.encode(), f"{parts['t']}.".encode() + request.body,
                        hashlib.sha256).hexdigest()
    return hmac.compare_digest(parts["v1"], expected)


async def test_a_failing_relay_raises_one_alert_and_clears_it_when_its_window_passes(
        store: Store, hooks: WebhookReceiver) -> None:
    clock = Clock()
    alerts = engine(store, settings(hooks.url), clock)
    for seconds in (1, 2, 3):
        await attempt(store, MessageStatus.DEFERRED, seconds)
    clock.now = at(10)

    raised = await alerts.evaluate()
    assert [spec.key for spec in raised.to_raise] == ["relay.default.failure_rate"]
    (active,) = await store.alerts.list_alerts(active_only=True)
    assert active.detail == "3 of 3 attempts in the last 1m did not deliver (3 deferred)"
    (posted,) = hooks.requests()
    assert posted.path == "/hook" and signed_correctly(posted)
    assert posted.json["type"] == "alert.raised"
    assert posted.json["alert"]["key"] == "relay.default.failure_rate"
    assert posted.json["alert"]["guidance_key"] == "relay_failure_rate"
    assert posted.json["alert"]["guidance"].startswith("Relay keeps failing: ")
    assert posted.json["alert"]["cleared_at"] is None

    again = await alerts.evaluate()
    assert (again.to_raise, again.to_clear) == ((), ())
    assert len(hooks.requests()) == 1, "an active alert is posted once"

    clock.now = at(70)  # the failures left the 60 s window
    cleared = await alerts.evaluate()
    assert cleared.to_clear == ("relay.default.failure_rate",)
    assert await store.alerts.list_alerts(active_only=True) == ()
    last = hooks.requests()[-1]
    assert last.json["type"] == "alert.cleared" and signed_correctly(last)
    assert last.json["alert"]["cleared_at"] == "2030-01-01T12:01:10Z"
    await alerts.aclose()


async def test_deliveries_that_succeed_again_clear_the_alert(
        store: Store, hooks: WebhookReceiver) -> None:
    clock = Clock()
    alerts = engine(store, settings(hooks.url), clock)
    for seconds in (1, 2, 3):
        await attempt(store, MessageStatus.DEFERRED, seconds)
    clock.now = at(4)
    assert (await alerts.evaluate()).to_raise
    for seconds in (5, 6, 7, 8):
        await attempt(store, MessageStatus.SENT, seconds)
    clock.now = at(9)  # 3 failed of 7 in the window: under half
    assert (await alerts.evaluate()).to_clear == ("relay.default.failure_rate",)
    assert [r.json["type"] for r in hooks.requests()] == ["alert.raised", "alert.cleared"]
    await alerts.aclose()


async def test_held_mail_raises_the_attention_and_held_alerts(
        store: Store, hooks: WebhookReceiver) -> None:
    clock = Clock()
    alerts = engine(store, settings(hooks.url, held_count=1), clock)
    await attempt(store, MessageStatus.HELD, 1, relay="smtp1")
    clock.now = at(2)

    changes = await alerts.evaluate()

    assert sorted(spec.key for spec in changes.to_raise) == [
        "queue.held", "relay.smtp1.needs_attention"]
    severities = {a.key: a.severity for a in await store.alerts.list_alerts(active_only=True)}
    assert severities == {"queue.held": "warning", "relay.smtp1.needs_attention": "critical"}
    await alerts.aclose()


async def test_a_message_held_for_its_attachment_raises_only_the_held_alert(
        store: Store, hooks: WebhookReceiver) -> None:
    """A corrupt attachment is about one message: `queue.held`, never a critical
    "relay needs attention", and `relay ls` does not call the relay broken."""
    clock = Clock()
    alerts = engine(store, settings(hooks.url, held_count=1), clock)
    await attempt(store, MessageStatus.SENT, 1, relay="picky")
    await attempt(store, MessageStatus.HELD, 2, relay="picky", held_for_relay=False)
    clock.now = at(3)

    changes = await alerts.evaluate()

    assert [spec.key for spec in changes.to_raise] == ["queue.held"]
    assert [a.key for a in await store.alerts.list_alerts(active_only=True)] == ["queue.held"]
    picky = (await health(store, settings(hooks.url), clock).snapshot()).relay("picky")
    assert picky is not None
    assert (picky.state, verdict(picky, clock.now)) == (RelayState.OK, "ok")
    await alerts.aclose()


async def test_a_relay_marked_as_needing_attention_raises_until_it_is_fixed(
        store: Store, hooks: WebhookReceiver) -> None:
    clock = Clock()
    alerts = engine(store, settings(hooks.url), clock)
    await store.relay_auth.set_relay_state("o365", "needs_attention", "535 5.7.8 bad credentials",
                                           "smtp.5.7.8", at(1))
    clock.now = at(2)
    (spec,) = (await alerts.evaluate()).to_raise
    assert (spec.key, spec.guidance) == ("relay.o365.needs_attention", "smtp.5.7.8")
    assert hooks.requests()[-1].json["alert"]["guidance"].startswith(
        CATALOGUE["smtp.5.7.8"].title)

    await store.relay_auth.set_relay_state("o365", "ok", "", "", at(3))
    clock.now = at(4)
    assert (await alerts.evaluate()).to_clear == ("relay.o365.needs_attention",)
    await alerts.aclose()


async def test_a_backlog_alert_when_mail_waits_too_long(store: Store,
                                                         hooks: WebhookReceiver) -> None:
    clock = Clock()
    alerts = engine(store, settings(hooks.url, oldest_queued_age="10m"), clock)
    await store.messages.enqueue(new_message(accepted_at=T0))
    clock.now = T0 + timedelta(minutes=9)
    assert (await alerts.evaluate()).to_raise == ()
    clock.now = T0 + timedelta(minutes=11)
    (spec,) = (await alerts.evaluate()).to_raise
    assert spec.key == "queue.backlog"
    assert spec.detail == "the oldest waiting message was accepted 11m ago (limit 10m)"
    await alerts.aclose()


async def test_a_refusing_webhook_is_tried_three_times_and_the_alert_stays_listed(
        store: Store) -> None:
    clock = Clock()
    with WebhookReceiver(status=500) as refusing:
        alerts = engine(store, settings(refusing.url, held_count=1), clock)
        await store.messages.enqueue(new_message(hold=Hold("test")))
        await alerts.evaluate()
        assert len(refusing.requests()) == 3
        assert all(signed_correctly(r) for r in refusing.requests())
        await alerts.aclose()
    assert [a.key for a in await store.alerts.list_alerts(active_only=True)] == ["queue.held"]


async def test_without_a_webhook_alerts_are_only_stored_and_logged(store: Store) -> None:
    clock = Clock()
    quiet = AlertSettings(held_count=1)
    alerts = AlertEngine(store, quiet, health(store, quiet, clock), clock=clock)
    await store.messages.enqueue(new_message(hold=Hold("test")))
    assert [s.key for s in (await alerts.evaluate()).to_raise] == ["queue.held"]
    await alerts.aclose()


def test_signatures_verify_and_refuse_tampering_and_replays() -> None:
    body = b'{"type":"alert.raised"}'
    now = time.time()
    header = sign(SECRET, int(now), body)
    assert header.startswith(f"t={int(now)},v1=")
    assert verify(SECRET, header, body, now)
    assert not verify(SECRET, header, body + b" ", now)
    assert not verify("another secret", header, body, now)
    assert not verify(SECRET, header, body, now + 301), "too old: a replay"
    assert not verify(SECRET, "v1=abc", body, now)
    assert not verify(SECRET, "garbage", body, now)
