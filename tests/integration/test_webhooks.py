"""Event webhooks in one process: the guarded HTTP client against a real receiver on
loopback, and the dispatcher over a real SQLite store with the time passed in, so
back-offs, `max_age` and the disabling streak pass without waiting (both backends and
real `outbox serve` processes: tests/e2e/test_webhooks.py)."""

from __future__ import annotations

import ipaddress
import json
import random
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from tests.contract.support import T0, new_message
from tests.webhook import Received, WebhookReceiver

from outbox.config import Settings
from outbox.core import signing
from outbox.core.webhooks import DeliveryPolicy
from outbox.delivery.webhook_http import WebhookClient
from outbox.errors import InputError
from outbox.service.alerts import AlertEngine
from outbox.service.health import Health
from outbox.service.webhook_dispatch import Dispatcher
from outbox.service.webhooks import Webhooks, delivery_policy
from outbox.store.base import Store
from outbox.store.factory import open_store
from outbox.supervision import Loops

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as started:
        yield started


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await open_store(f"sqlite:///{tmp_path}/outbox.db")
    await opened.migrate()
    yield opened
    await opened.close()


def settings(tmp_path: Path, **webhooks: object) -> Settings:
    return Settings(database={"url": f"sqlite:///{tmp_path}/outbox.db"},
                    webhooks={"allowed_networks": ["127.0.0.0/8"], **webhooks})


def valid(request: Received, secret: str) -> bool:
    return signing.verify_event(secret, request.headers["Outbox-Timestamp"],
                                request.headers["Outbox-Signature"], request.body, time.time())


# -- the client: SSRF guard at connection time ------------------------------------------------

async def test_the_client_refuses_loopback_unless_its_network_is_allowed(
        receiver: WebhookReceiver) -> None:
    refusing, allowing = WebhookClient((), 5.0), WebhookClient(LOOPBACK, 5.0)
    try:
        refused = await refusing.post(receiver.url, b"{}", {})
        delivered = await allowing.post(receiver.url, b"{}", {})
    finally:
        await refusing.aclose()
        await allowing.aclose()

    assert not refused.ok and refused.status is None
    assert "127.0.0.1 is a loopback address" in refused.error
    assert (delivered.ok, delivered.status) == (True, 200)
    assert len(receiver.requests()) == 1  # the refused request never left


async def test_a_client_is_made_at_the_first_post_and_not_before(
        receiver: WebhookReceiver) -> None:
    """A server with no endpoint never loads the CA bundle (0.1 s of CPU per start)."""
    unused, used = WebhookClient(LOOPBACK, 5.0), WebhookClient(LOOPBACK, 5.0)
    await unused.aclose()
    try:
        delivered = await used.post(receiver.url, b"{}", {})
        assert used._made is not None
    finally:
        await used.aclose()
    assert unused._made is None
    assert delivered.ok


async def test_a_host_name_is_checked_by_every_address_it_resolves_to(
        receiver: WebhookReceiver) -> None:
    by_name = receiver.url.replace("127.0.0.1", "localhost")
    client = WebhookClient((), 5.0)
    try:
        refused = await client.post(by_name, b"{}", {})
    finally:
        await client.aclose()
    assert "localhost:" in refused.error and "loopback" in refused.error
    assert receiver.requests() == []


async def test_redirects_are_not_followed() -> None:
    with WebhookReceiver(status=302) as redirecting:
        client = WebhookClient(LOOPBACK, 5.0)
        try:
            result = await client.post(redirecting.url, b"{}", {})
        finally:
            await client.aclose()
    assert (result.ok, result.status) == (False, 302)
    assert "HTTP 302" in result.error


async def test_adding_an_endpoint_checks_its_url_and_addresses(tmp_path: Path,
                                                                store: Store) -> None:
    strict = Webhooks(Settings(database={"url": f"sqlite:///{tmp_path}/outbox.db"}), store)
    for url, words in (("http://127.0.0.1:9/hook", "loopback"), ("http://10.1.2.3/", "private"),
                       ("http://169.254.169.254/latest", "link-local"),
                       ("ftp://example.com/", "http://"), ("http://u:p@example.com/", "password"),
                       ("http://[::1]:8080/", "loopback"), ("http://0.0.0.0/", "unspecified")):
        with pytest.raises(InputError) as refused:
            await strict.add(url, ["sent"])
        assert refused.value.field == "url" and words in refused.value.message, url
    assert await store.webhooks.list_endpoints() == ()


# -- the dispatcher ------------------------------------------------------------------------

def test_the_policy_s_defaults_are_the_configs() -> None:
    """tests/unit/test_webhooks_core.py tests the schedule and streak at these."""
    assert delivery_policy(Settings()) == DeliveryPolicy()


async def rounds(dispatcher: Dispatcher, clock: Clock, count: int, step: float = 3700) -> None:
    """`count` rounds, `step` seconds apart (past any back-off by default)."""
    for _ in range(count):
        await dispatcher.round()
        await dispatcher.drain()
        clock.advance(seconds=step)


def dispatcher_for(tmp_path: Path, store: Store, clock: Clock,
                   **webhooks: object) -> tuple[Webhooks, Dispatcher]:
    config = settings(tmp_path, **webhooks)
    hooks = Webhooks(config, store, clock=clock)
    return hooks, Dispatcher(config, store, hooks, Loops(), clock=clock, rng=random.Random(3))


async def test_a_batching_endpoint_gets_its_events_together_signed_with_their_ids(
        tmp_path: Path, store: Store, receiver: WebhookReceiver) -> None:
    clock = Clock()
    hooks, dispatcher = dispatcher_for(tmp_path, store, clock)
    created = await hooks.add(receiver.url, ["queued"], batch_size=10)
    for i in range(3):
        await store.messages.enqueue(new_message(id=f"m{i}", accepted_at=T0))

    await rounds(dispatcher, clock, 1)

    (request,) = receiver.requests()
    assert valid(request, created.secret)
    events = request.json["events"]
    assert [e["message"]["id"] for e in events] == ["m0", "m1", "m2"]
    assert request.headers["Outbox-Event-Id"] == ",".join(e["id"] for e in events)
    assert events[0]["message"]["metadata"] == {"n": events[0]["message"]["metadata"]["n"]}
    await dispatcher.aclose()


async def test_an_event_older_than_max_age_is_given_up_without_a_request(
        tmp_path: Path, store: Store) -> None:
    clock = Clock()
    with WebhookReceiver(status=503) as down:
        # Disabling off: this test is about max_age alone (disabling at the defaults is the
        # next test's).
        hooks, dispatcher = dispatcher_for(tmp_path, store, clock, disable_after_failures=0)
        created = await hooks.add(down.url, ["queued"])
        await store.messages.enqueue(new_message(id="m1", accepted_at=T0))
        await rounds(dispatcher, clock, 14, step=6 * 3600)  # past the 3 days

    (delivery,) = await hooks.log(created.endpoint.id)
    assert delivery.status == "failed" and "max_age" in delivery.error
    tries = down.requests()
    assert len(tries) == 12  # at 0 h, 6 h, ... 66 h; at 72 h it was too old
    assert len({r.headers["Outbox-Event-Id"] for r in tries}) == 1  # one event, one id
    await dispatcher.aclose()


async def test_a_failing_endpoint_is_disabled_after_the_default_streak_with_an_alert(
        tmp_path: Path, store: Store) -> None:
    clock = Clock()
    with WebhookReceiver(status=500) as down:
        hooks, dispatcher = dispatcher_for(tmp_path, store, clock)  # the default streak
        created = await hooks.add(down.url, ["queued"])
        for i in range(3):
            await store.messages.enqueue(new_message(id=f"m{i}", accepted_at=T0))
        await rounds(dispatcher, clock, 7, step=3 * 3600)  # 3 requests every 3 h

        endpoint = await hooks.get(created.endpoint.id)
        assert endpoint.is_enabled and endpoint.failures == 21  # 20 in a row, but < 24 h
        await rounds(dispatcher, clock, 2, step=3 * 3600)  # at 21 h, then 24 h: disabled
        endpoint = await hooks.get(created.endpoint.id)
        assert not endpoint.is_enabled and endpoint.failures == 27
        assert "failed over more than 1d" in endpoint.disabled_reason
        sent = len(down.requests())
        await rounds(dispatcher, clock, 2)
        assert len(down.requests()) == sent  # nothing posted while disabled

    config = settings(tmp_path)
    engine = AlertEngine(store, config.alerts, Health(config, store, Loops(), clock=clock),
                         clock=clock)
    raised = await engine.evaluate()
    assert [a.key for a in raised.to_raise if a.key.startswith("webhook.")] == [
        f"webhook.{created.endpoint.id}.disabled"]
    assert await hooks.enable(created.endpoint.id)
    assert f"webhook.{created.endpoint.id}.disabled" in (await engine.evaluate()).to_clear
    await dispatcher.aclose()


async def test_a_redelivered_event_keeps_its_id(tmp_path: Path, store: Store,
                                                receiver: WebhookReceiver) -> None:
    clock = Clock()
    hooks, dispatcher = dispatcher_for(tmp_path, store, clock)
    created = await hooks.add(receiver.url, ["*"])
    assert created.secret.startswith("whsec_") and len(created.endpoint.events) == 12
    assert created.secret not in created.endpoint.secret  # stored sealed
    await store.messages.enqueue(new_message(id="m1", accepted_at=T0))
    await rounds(dispatcher, clock, 1)
    (first,) = receiver.requests()

    assert await hooks.redeliver(first.json["id"]) == 1
    await rounds(dispatcher, clock, 1)

    first_again = receiver.requests()[1]
    assert first_again.body == first.body and valid(first_again, created.secret)
    (logged,) = await hooks.log(created.endpoint.id)
    assert (logged.status, logged.attempts) == ("delivered", 2)
    assert json.loads(first.body)["type"] == "queued"
    await dispatcher.aclose()
